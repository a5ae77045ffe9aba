"""The classifier heads' wide degradation ranges (m3unet.training.classifier.wide_degradations)."""
from __future__ import annotations

import pytest
import torch

from m3unet.auto.classifier import LABELS, targets
from m3unet.training import synthesis as deg
from m3unet.training.classifier import apply_in_order, wide_degradations


def test_wide_draws_cover_every_label_with_valid_severities_and_keep_the_image_in_range():
    gen = torch.Generator().manual_seed(0)
    seen, clean, orders = set(), 0, set()
    x = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))
    for _ in range(300):
        d = wide_degradations(gen)
        if not d:
            clean += 1
            continue
        assert len(d) <= 3 and not {"blur", "motion"} <= {e.kind for e in d}
        assert all(0.0 <= e.severity <= 1.0 for e in d)
        y, s = targets(d)
        seen |= {LABELS[i] for i in range(len(LABELS)) if y[i] > 0}
        orders.add(tuple(e.kind for e in d))
        out = apply_in_order(x, d, gen)
        assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    assert seen == set(LABELS) and 60 < clean < 140
    # mixes come in random order, not only the camera order
    assert any(list(o) != sorted(o, key=lambda k: deg.ORDER[k]) for o in orders if len(o) > 1)


def test_lowres_modes_and_poisson_gaussian_noise():
    x = torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(2))
    outs = [deg.apply_one(x, deg.Degradation("lowres", 0.5, {"scale": 3.0, "mode": m})) for m in ("bicubic", "bilinear", "area")]
    assert all(o.shape == x.shape for o in outs) and not torch.allclose(outs[0], outs[2])
    g = torch.Generator().manual_seed(3)
    pure = deg.apply_one(x, deg.Degradation("poisson", 0.5, {"peak": 50.0}), torch.Generator().manual_seed(3))
    mixed = deg.apply_one(x, deg.Degradation("poisson", 0.5, {"peak": 50.0, "sigma": 8 / 255}), g)
    assert (mixed - x).std() > (pure - x).std()


def test_dark_regions_are_drawn_from_the_photo_s_dark_part():
    """``dark_region`` with a generator draws among the darkest squares, all of them dark; without one
    it gives the darkest square (the stress set's darkest crop)."""
    from m3unet.training.data import dark_region
    x = torch.full((3, 200, 300), 0.8)
    x[:, 100:200, 0:150] = 0.05 + 0.02 * torch.linspace(0, 1, 150)  # a dark part, a quarter of the photo
    gen = torch.Generator().manual_seed(0)
    draws = [dark_region(x, 64, gen, among=0.1) for _ in range(12)]
    assert all(d.shape == (3, 64, 64) and float(d.mean()) < 0.15 for d in draws)
    assert len({round(float(d.sum()), 3) for d in draws}) >= 3  # drawn, not always the same square
    darkest = dark_region(x, 64)
    assert float(darkest.mean()) < min(float(d.mean()) for d in draws) + 1e-6
    assert dark_region(x, 500).shape == (3, 200, 200)  # a photo smaller than the square: its short side


def test_fit_heads_checks_its_shares_and_validation_photos(tmp_path):
    from m3unet.auto.classifier import DegradationClassifier
    from m3unet.training.classifier import fit_heads
    for kwargs, match in [({"dark": 1.5}, "dark"), ({"val_pick": "first"}, "val_pick")]:
        with pytest.raises(ValueError, match=match):
            fit_heads(DegradationClassifier(), data=str(tmp_path), **kwargs)


def test_training_batches_over_wide_ranges_with_dark_regions_keep_labels_and_shape():
    """``make_batch`` with ``ranges``/``dark`` (the CNN's training samples, ``train-classifier --ranges
    --dark``): dark regions come from the photo's dark part, clean ones carry no label, and every
    sample has the inference views' shapes."""
    from m3unet.auto.classifier import ClassifierConfig
    from m3unet.training.classifier import degraded_region, make_batch
    photo = torch.full((3, 160, 240), 200, dtype=torch.uint8)
    photo[:, 80:, :120] = 10  # a dark part: a quarter of the photo
    gen = torch.Generator().manual_seed(0)
    for ranges in ("train", "wide", "both"):
        img, d = degraded_region(photo, 64, gen, ranges, dark=1.0, p_clean=1.0)
        assert d == [] and img.shape == (3, 64, 64) and float(img.mean()) < 0.1
    img, d = degraded_region(photo, 64, gen, "wide", p_clean=0.0, p_mix=1.0)
    assert 2 <= len(d) <= 3 and img.shape == (3, 64, 64)
    cfg = ClassifierConfig()
    c, w, y, s = make_batch([photo], cfg, 5, 2, 96, gen, ranges="both", dark=0.5, dof=0.5)
    assert c.shape == (5, 2, 3, cfg.crop, cfg.crop) and w.shape == (5, 3, cfg.global_size, cfg.global_size)
    assert y.shape == s.shape == (5, len(LABELS)) and bool(((s > 0) <= (y > 0)).all())
    with pytest.raises(ValueError, match="ranges"):
        degraded_region(photo, 64, gen, "widest")


def test_train_classifier_checks_its_ranges_and_shares(tmp_path):
    from m3unet.training.classifier import train_classifier
    for kwargs, match in [({"ranges": "all"}, "ranges"), ({"dark": -0.1}, "dark"), ({"dof": 2.0}, "dof")]:
        with pytest.raises(ValueError, match=match):
            train_classifier(data=str(tmp_path), out=str(tmp_path / "o"), steps=1, **kwargs)
