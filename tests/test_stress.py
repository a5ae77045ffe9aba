"""The stress set: seeded, over the documented ranges, mixes of different families; F1 per family."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from m3unet.evaluation import stress

pytestmark = pytest.mark.unit


def photos() -> dict[str, np.ndarray]:
    g = np.random.default_rng(0)
    base = np.linspace(0, 255, 96 * 96 * 3).reshape(96, 96, 3)
    return {f"p{i}": np.clip(base + g.normal(0, 20, base.shape), 0, 255).astype(np.uint8) for i in range(3)}


def test_the_stress_set_is_seeded_covers_every_kind_and_keeps_the_size():
    a, b = stress.stress_set(photos(), per_kind=3, crop=64), stress.stress_set(photos(), per_kind=3, crop=64)
    assert len(a) == 3 * (1 + 3 * (len(stress.KINDS) + 2))
    assert all(torch.equal(x.degraded, y.degraded) for x, y in zip(a, b))  # the same seed, the same set
    other = stress.stress_set(photos(), per_kind=3, crop=64, seed=stress.STRESS_SEED + 1)
    assert not all(torch.equal(x.degraded, y.degraded) for x, y in zip(a, other))
    for c in a:
        assert c.degraded.shape == c.clean.shape == (3, 64, 64)
        assert 0 <= float(c.degraded.min()) and float(c.degraded.max()) <= 1
        if c.name.startswith("mix"):
            assert len(c.applied) == int(c.name[-1]) == len(c.families)  # each kind from another family
        elif c.name == "clean":
            assert c.applied == [] and torch.equal(c.degraded, c.clean)
        else:
            assert [x.kind for x in c.applied] == [c.name]
    assert {x.kind for c in a for x in c.applied} == set(stress.KINDS)


@pytest.mark.parametrize("kind, key, lo, hi", [("gaussian noise", "sigma", 5 / 255, 50 / 255),
                                               ("defocus", "sigma", 0.8, 3.5), ("linear motion", "length", 5, 25),
                                               ("jpeg", "quality", 5, 70), ("downsampling", "factor", 2, 4),
                                               ("low light", "gain", 0.15, 0.5), ("haze", "density", 0.25, 0.75)])
def test_draws_stay_in_the_documented_ranges(kind, key, lo, hi):
    g = torch.Generator().manual_seed(1)
    draws = [stress.draw(kind, g) for _ in range(200)]
    values = [d.params[key] for d in draws]
    assert lo - 1e-9 <= min(values) and max(values) <= hi + 1e-9
    assert {d.band for d in draws} == set(stress.BANDS)
    if kind == "linear motion":
        assert all(d.params["curve"] == 0 for d in draws)


def test_f1_per_family_and_the_soft_family():
    c = lambda fams: stress.StressCase("p", "x", [], torch.zeros(1), torch.zeros(1), set(fams))  # noqa: E731
    cases = [c({"noise"}), c({"soft"}), c({"soft", "jpeg"}), c(set())]
    readings = [{"noise"}, {"soft"}, {"jpeg"}, {"noise"}]
    f1 = stress.f1_scores(cases, readings)
    assert f1["noise"] == pytest.approx(2 / 3, abs=1e-3) and f1["jpeg"] == 1.0 and f1["soft"] == pytest.approx(2 / 3, abs=1e-3)
    assert np.isnan(f1["haze"])
    assert stress.FAMILY_OF_LABEL["blur"] == stress.FAMILY_OF_LABEL["lowres"] == "soft"


def test_darkest_crop_finds_the_photo_s_dark_scene():
    import numpy as np
    from m3unet.evaluation.stress import darkest_crop, stress_set
    a = np.full((300, 400, 3), 200, np.uint8)
    a[180:300, 0:120] = 20  # a dark corner
    c = darkest_crop(a, 96)
    assert c.shape == (3, 96, 96) and float(c.mean()) < 30 / 255
    cases = stress_set({"p": a}, per_kind=1, crop=96, region="dark")
    assert float(cases[0].clean.mean()) < 30 / 255 and cases[0].name == "clean"
    import pytest
    with pytest.raises(ValueError, match="region"):
        stress_set({"p": a}, per_kind=1, crop=96, region="left")


def _row(photo, applied, read):
    return {"photo": photo, "families": sorted({stress.FAMILY_OF_KIND[k] for k in applied}),
            "applied": [{"kind": k} for k in applied], "read": read}


def test_miss_causes_tells_hidden_texture_and_low_light_noise_from_other_misses():
    rows = [_row("a", ["gaussian noise", "defocus"], []),         # noise smoothed away by a later blur
            _row("a", ["defocus", "gaussian noise"], ["blur"]),   # noise on top, missed: a real miss
            _row("b", ["low light"], ["lowlight", "noise"]),      # low light's own sensor noise read
            _row("b", [], ["noise"]),                             # a clean case read as noisy
            _row("c", ["poisson-gaussian"], ["noise"]),           # read right
            _row("c", ["jpeg", "downsampling"], ["lowres"])]      # JPEG under a later down-sampling
    m = stress.miss_causes(rows)
    noise = m["noise"]
    assert (noise["fn_hidden"], noise["fn_other"], noise["fp_lowlight_noise"], noise["fp_other"]) == (1, 1, 1, 1)
    assert noise["f1"] == round(2 * 1 / (2 * 1 + 2 + 2), 3)            # as scored: tp 1, fp 2, fn 2
    assert noise["f1_visible"] == round(2 * 1 / (2 * 1 + 1 + 1), 3)    # the hidden and sensor cases left out
    assert noise["photo_out"] == ["a", round(2 * 1 / (2 + 2 + 0), 3)]  # leaving out a removes both misses
    assert m["jpeg"]["fn_hidden"] == 1 and np.isnan(m["jpeg"]["f1_visible"])  # nothing visible left to score
    # families other than noise and JPEG are never excused
    assert m["soft"]["fn_hidden"] == 0 and m["soft"]["f1_visible"] == m["soft"]["f1"]
    # the scored F1 is f1_scores' on the same readings
    assert stress.miss_causes([_row("a", ["haze"], ["haze"]), _row("a", [], ["haze"])])["haze"]["f1"] == round(2 / 3, 3)
