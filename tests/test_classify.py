"""DegradationClassifier: views, the network's trainability, the shipped weights, files and findings."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from m3unet.training import synthesis as deg
from m3unet.training.classifier import quantise
from m3unet.auto.classifier import DEFAULT_CLASSIFIER, LABELS, Classifier, ClassifierConfig, DegradationClassifier, Finding, crop_positions, default_plan, load_classifier, save_classifier, targets, views
from m3unet.core.weights import CheckpointError


REPO = Path(__file__).resolve().parent.parent


def clean_coffee() -> torch.Tensor:
    """The held-out coffee photo (never trained on), [3, H, W] in [0, 1]."""
    return torch.from_numpy(np.array(Image.open(REPO / "assets" / "examples" / "coffee_clean.png").convert("RGB"))
                            ).permute(2, 0, 1).float() / 255


def as_image(x: torch.Tensor) -> torch.Tensor:
    return quantise(x).permute(1, 2, 0)[None]


@pytest.fixture(scope="module")
def shipped() -> Classifier:
    return Classifier(load_classifier())


# ---------------------------------------------------------------------------- views and shapes
def test_views_targets_and_forward_shapes():
    model = DegradationClassifier()
    cfg = model.config
    img = torch.rand(3, 150, 200)
    crops, whole = views(img, cfg)
    assert crops.shape == (cfg.crops, 3, cfg.crop, cfg.crop) and whole.shape == (3, cfg.global_size, cfg.global_size)
    small_crops, _ = views(torch.rand(3, 40, 50), cfg)  # smaller than a crop: smaller crops
    assert small_crops.shape[-2:] == (40, 40)
    y, s = targets([deg.make("poisson", 0.7), deg.make("jpeg", 0.2)])
    assert y[LABELS.index("noise")] == 1 and y[LABELS.index("jpeg")] == 1 and y.sum() == 2
    assert abs(float(s[LABELS.index("noise")]) - 0.7) < 1e-6
    model.eval()
    logits, sev = model(crops[None], whole[None])
    assert logits.shape == sev.shape == (1, len(LABELS)) and (0 <= sev).all() and (sev <= 1).all()
    more, _ = views(img, cfg, k=5)  # attention pooling: any number of crops
    assert model(more[None], whole[None])[0].shape == (1, len(LABELS))


@pytest.mark.parametrize("h,w", [(150, 200), (1000, 700), (64, 64), (71, 300)])
def test_crops_sit_on_the_jpeg_grid(h, w):
    gen = torch.Generator().manual_seed(0)
    for pos in (crop_positions(h, w, 64, 16), crop_positions(h, w, 64, 16, gen)):
        assert pos and all(y % 8 == 0 and x % 8 == 0 and y + 64 <= h and x + 64 <= w for y, x in pos)
    grid = crop_positions(h, w, 64, 16)
    assert len(set(grid)) == len(grid)  # an even grid, no duplicates


# ---------------------------------------------------------------------------- trainability
def test_pixel_level_signal_survives_the_local_branch():
    """Regression: the first classifier's plain conv stack let a heavy noise or blur
    change its final crop features by 1e-4..1e-6 relative (the biases dominated), so it never
    learned the local labels. With BatchNorm the change must be of order one."""
    torch.manual_seed(0)
    model = DegradationClassifier().train()
    x = clean_coffee()[:, :128, :128]
    g = torch.Generator().manual_seed(0)
    batch = torch.stack([x, deg.apply(x, [deg.make("noise", 0.8)], g), deg.apply(x, [deg.make("blur", 0.8)], g)])
    inp = torch.cat([batch * 2 - 1, (batch - torch.nn.functional.avg_pool2d(
        torch.nn.functional.pad(batch, (1, 1, 1, 1), mode="replicate"), 3, 1)) * 8], 1)
    f = model.local(inp).mean((2, 3))
    for i in (1, 2):
        assert ((f[i] - f[0]).norm() / f[0].norm()) > 0.05


def test_tiny_classifier_learns_noise_from_crops():
    """A quick overfit check: a tiny classifier separates noisy from clean crops in a few steps."""
    torch.manual_seed(0)
    cfg = ClassifierConfig(widths=[8, 16, 16, 16], global_widths=[8, 8], hidden=32, crop=32, crops=2, global_size=16)
    model = DegradationClassifier(cfg)
    g = torch.Generator().manual_seed(0)
    photo = clean_coffee()
    xs, ys = [], []
    for i in range(16):
        y0, x0 = int(torch.randint(0, 300, (), generator=g)), int(torch.randint(0, 500, (), generator=g))
        region = photo[:, y0:y0 + 64, x0:x0 + 64]
        d = [deg.make("noise", 0.3)] if i % 2 else []
        c, w = views(quantise(deg.apply(region, d, g)), cfg, g)
        xs.append((c, w))
        ys.append(targets(d)[0])
    crops, wholes, y = torch.stack([c for c, _ in xs]), torch.stack([w for _, w in xs]), torch.stack(ys)
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    for _ in range(60):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(crops, wholes)[0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    pred = torch.sigmoid(model(crops, wholes)[0][:, LABELS.index("noise")]) > 0.5
    assert (pred == y[:, LABELS.index("noise")].bool()).all()


# ---------------------------------------------------------------------------- shipped weights
@pytest.mark.parametrize("kind,label", [("noise", "noise"), ("jpeg", "jpeg"), ("blur", "blur"),
                                        ("motion", "motion"), ("haze", "haze"), ("lowlight", "lowlight")])
def test_shipped_classifier_detects_a_heavy_degradation(shipped, kind, label):
    g = torch.Generator().manual_seed(1)
    d = [deg.make(kind, 0.9, g)]
    f = shipped(as_image(deg.apply(clean_coffee(), d, g)))[0]
    assert f.labels and f.labels[0] == label, f.report()
    assert f.levels()[label] in ("moderate", "heavy"), f.report()
    from m3unet.core.text import NOUN
    assert NOUN[label][0] in f.restoration_text(), f.restoration_text()


def test_shipped_classifier_on_the_clean_and_the_degraded_example(shipped):
    clean, degraded = (np.asarray(Image.open(REPO / "assets" / "examples" / n).convert("RGB"))
                       for n in ("coffee_clean.png", "coffee_degraded.png"))
    f_clean, f_deg = shipped(torch.from_numpy(np.stack([clean, degraded])))
    assert f_clean.labels == [], f_clean.report()
    assert f_deg.labels, f_deg.report()  # blur + noise + JPEG: something is found
    assert f_deg.restoration_text()


def test_shipped_classifier_work_does_not_grow_with_the_image(shipped):
    """Its speed is a fixed amount of work: the network reads the same number of crops and the same
    whole-image view at 1 MP and at 4 MP. (The time itself is measured, not asserted: the `speed`
    field of `eval-classifier` in the README; timed unit tests fail on a busy machine.)"""
    seen = []
    hook = shipped.model.register_forward_hook(lambda _m, args, _out: seen.append(
        (tuple(args[0].shape), tuple(args[1].shape))))
    try:
        for side in (1000, 2000):
            findings = shipped((torch.rand(1, side, side, 3) * 255).to(torch.uint8))
            assert len(findings) == 1 and set(findings[0].probabilities) == set(LABELS)
    finally:
        hook.remove()
    assert len(seen) == 2 and seen[0] == seen[1], seen
    assert seen[0][0][1] == shipped.model.config.crops


# ---------------------------------------------------------------------------- findings, files
def test_finding_text_plan_and_round_trip(tmp_path):
    f = Finding({k: 0.0 for k in LABELS} | {"motion": 0.9, "noise": 0.8},
                {k: 0.0 for k in LABELS} | {"motion": 0.5, "noise": 0.1})
    assert f.labels == ["motion", "noise"]
    assert f.restoration_text() == "remove the moderate motion blur, then remove the light noise"
    assert "motion: moderate" in f.report()
    d = f.to_dict()
    assert set(d["labels"]) == set(LABELS) and d["detected"] == ["motion", "noise"]
    plan = default_plan(f)
    assert [s["task"] for s in plan] == ["motion", "noise"]
    assert plan[0] == {"task": "motion", "strength": "moderate", "model": "m3unet",
                       "text": "remove the moderate motion blur"}
    assert default_plan(Finding({k: 0.1 for k in LABELS}, {k: 0.5 for k in LABELS})) == []
    model = DegradationClassifier(ClassifierConfig(widths=[8, 8, 8, 8], global_widths=[8, 8], hidden=16))
    torch.nn.init.normal_(model.head[-1].weight)
    save_classifier(model, tmp_path / "c.safetensors")
    loaded = load_classifier(tmp_path / "c.safetensors")
    assert loaded.config == model.config
    image = torch.rand(2, 64, 80, 4)
    a, b = Classifier(model)(image), Classifier(loaded)(image)
    assert len(a) == 2 and set(a[0].probabilities) == set(LABELS)
    assert a[0].probabilities == b[0].probabilities and a[1].severity == b[1].severity


def test_bad_classifier_files_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_classifier(tmp_path / "missing.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(CheckpointError, match="broken.safetensors.*not a readable safetensors"):
        load_classifier(tmp_path / "broken.safetensors")
    (tmp_path / "evil.pt").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(CheckpointError, match="pickled checkpoints are refused"):
        load_classifier(tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a DegradationClassifier checkpoint"):
        load_classifier(REPO / "weights" / "m3unet-default.safetensors")
    assert DEFAULT_CLASSIFIER.is_file()


def test_adding_an_image_head_label_keeps_the_old_labels_exactly(tmp_path):
    """fit-classifier-heads --add: the new label is trained, the old labels' outputs do not move."""
    from m3unet.training.classifier import _extend_image_head
    torch.manual_seed(0)
    model = DegradationClassifier(ClassifierConfig()).eval()
    with torch.no_grad():  # a trained-looking old head (the real one starts at zero output)
        for p in model.image_head.parameters():
            p.normal_(0, 0.3)
    crops, whole = torch.rand(4, 16, 3, 64, 64), torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        feats = model.features(crops, whole)
        before = model.decide(*feats)
    new, masks = _extend_image_head(model, ["blur", "motion", "lowres", "lowlight"])
    new.eval()
    opt = torch.optim.AdamW(new.image_head.parameters(), lr=1e-2, weight_decay=0.0)
    target = torch.zeros(4, len(LABELS))
    for _ in range(5):
        logits, sev = new.decide(*feats)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target + 1) + sev.mean()
        opt.zero_grad()
        loss.backward()
        for p, m in zip(new.image_head.parameters(), masks):
            p.grad *= m
        opt.step()
    with torch.no_grad():
        after = new.decide(*feats)
    moved = [LABELS.index("lowlight")]
    keep = [i for i in range(len(LABELS)) if i not in moved]
    torch.testing.assert_close(after[0][:, keep], before[0][:, keep], rtol=1e-6, atol=1e-5)  # float rounding
    torch.testing.assert_close(after[1][:, keep], before[1][:, keep], rtol=1e-6, atol=1e-5)
    assert (after[0][:, moved] - before[0][:, moved]).abs().min() > 1e-3  # the new label learned
    save_classifier(new, tmp_path / "c.safetensors")
    again = load_classifier(tmp_path / "c.safetensors")
    assert again.config.image_labels[-1] == "lowlight" and again.config.image_hidden == 2 * 64
    with pytest.raises(ValueError, match="list the old ones first"):
        _extend_image_head(model, ["lowlight", "blur"])


def _textured(seed: int = 0, size: int = 256) -> torch.Tensor:
    """A photo-like test image: smooth random colour fields plus fine isotropic texture."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.nn.functional.interpolate(torch.rand(1, 3, 16, 16, generator=g), size=(size, size),
                                             mode="bicubic", align_corners=False)
    fine = torch.rand(1, 1, size, size, generator=g)
    return (0.6 * coarse + 0.4 * fine).clamp(0, 1)[0]


def test_spectrum_statistics_tell_motion_from_defocus_and_ignore_rotation():
    """The power-spectrum features: motion blur is anisotropic in any direction, defocus blur is
    not, and a blur bends the whitened radial profile down at high frequencies."""
    from m3unet.training import synthesis as deg
    from m3unet.auto.classifier import N_SPECTRUM, SPECTRUM_BANDS, spectrum_statistics
    cfg = ClassifierConfig()
    x = _textured()

    def stats(img):
        crops, _ = views(img, cfg)
        return spectrum_statistics(crops[None])[0]

    clean = stats(x)
    assert clean.shape == (N_SPECTRUM,) and torch.isfinite(clean).all()
    defocus = stats(deg.convolve(x, deg.gaussian_kernel(2.0)))
    b = SPECTRUM_BANDS
    aniso = {a: stats(deg.convolve(x, deg.motion_kernel(15, a, 0.0, 1)))[b:2 * b][4:12].mean() for a in (0, 45, 90, 135)}
    assert min(aniso.values()) > defocus[b:2 * b][4:12].mean() + 0.2, (aniso, defocus[b:2 * b])
    assert max(aniso.values()) - min(aniso.values()) < 0.25  # about the same in every direction
    assert defocus[b - 4:b].mean() < clean[b - 4:b].mean() - 1.0  # high bands fall off


def test_fitting_a_spectrum_head_standardises_its_inputs_and_round_trips(tmp_path, monkeypatch):
    """fit_heads(spectrum=True) gives the image-level head spectrum inputs, sets their
    standardisation from the cached training features, and the file loads back the same."""
    from m3unet.training import classifier as ct
    torch.manual_seed(0)
    model = DegradationClassifier(ClassifierConfig()).eval()
    photos = [(_textured(i) * 255).round().to(torch.uint8) for i in range(4)]
    monkeypatch.setattr(ct, "_photos", lambda data, split: photos)
    fitted = ct.fit_heads(model, data=str(tmp_path), per_photo=6, epochs=2, val_photos=1, spectrum=True,
                          image_hidden=32, log=lambda s: None)
    assert fitted.config.spectrum and fitted.config.image_hidden == 32
    assert fitted.spec_norm.running_var.min() > 0 and fitted.spec_norm.running_mean.abs().sum() > 0
    crops, whole = views(_textured(9), fitted.config)
    with torch.no_grad():
        out = fitted(crops[None], whole[None])
    save_classifier(fitted, tmp_path / "spec.safetensors")
    again = load_classifier(tmp_path / "spec.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(again(crops[None], whole[None]), out)
    with pytest.raises(ValueError, match="needs a fresh head"):
        ct.fit_heads(model, data=str(tmp_path), per_photo=2, epochs=1, val_photos=1, spectrum=True, add=True,
                     image_labels=["blur", "motion", "lowres", "lowlight"], log=lambda s: None)


def test_photometric_head_reads_only_the_colour_statistics(tmp_path, monkeypatch):
    """--photometric-labels lowlight: low light gets its own head on the colour statistics (texture
    changes by other steps must not move it); it round-trips, and a label cannot be in both heads."""
    from m3unet.training import classifier as ct
    torch.manual_seed(0)
    model = DegradationClassifier(ClassifierConfig()).eval()
    photos = [(_textured(i) * 255).round().to(torch.uint8) for i in range(4)]
    monkeypatch.setattr(ct, "_photos", lambda data, split: photos)
    fitted = ct.fit_heads(model, data=str(tmp_path), per_photo=6, epochs=2, val_photos=1, spectrum=True,
                          image_labels=["blur", "motion", "lowres"], photometric_labels=["lowlight"],
                          log=lambda s: None)
    assert fitted.config.photometric_labels == ["lowlight"] and fitted.photo_head is not None
    with torch.no_grad():
        for p in fitted.photo_head.parameters():
            p.normal_(0, 0.5)  # a head that clearly responds
    crops, whole = views(_textured(9), fitted.config)
    i = LABELS.index("lowlight")
    with torch.no_grad():
        loc, glb, st, spec = fitted.features(crops[None], whole[None])
        with_head = fitted.decide(loc, glb, st, spec)[0]
        added = fitted.photo_head(glb[:, -fitted.N_STATS:])[0, 0]  # from the colour statistics alone
        saved = [p.clone() for p in fitted.photo_head[-1].parameters()]
        for p in fitted.photo_head[-1].parameters():
            p.zero_()
        without = fitted.decide(loc, glb, st, spec)[0]
        for p, v in zip(fitted.photo_head[-1].parameters(), saved):
            p.copy_(v)
    assert abs(float(added)) > 1e-3
    torch.testing.assert_close(with_head[0, i] - without[0, i], added)
    others = [j for j in range(len(LABELS)) if j != i]
    torch.testing.assert_close(with_head[0, others], without[0, others])  # only low light
    save_classifier(fitted, tmp_path / "photo.safetensors")
    again = load_classifier(tmp_path / "photo.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(again(crops[None], whole[None]), fitted(crops[None], whole[None]))
    with pytest.raises(ValueError, match="not also image labels"):
        ct.fit_heads(model, data=str(tmp_path), per_photo=2, epochs=1, val_photos=1,
                     image_labels=["blur", "lowlight"], photometric_labels=["lowlight"], log=lambda s: None)


def test_fit_heads_command_records_the_minimum_side(tmp_path, monkeypatch):
    """fit-classifier-heads --min-side writes the side into the file (Classifier.min_side reads it);
    without the flag the --init file's value carries over."""
    from m3unet.training import classifier as ct
    from m3unet.auto.classifier import Classifier, load_classifier, save_classifier
    from m3unet.cli.main import _parser
    torch.manual_seed(0)
    photos = [(_textured(i, 160) * 255).round().to(torch.uint8) for i in range(6)]  # 5 pick the epoch
    monkeypatch.setattr(ct, "_photos", lambda data, split: photos)
    save_classifier(DegradationClassifier(ClassifierConfig()), tmp_path / "init.safetensors")
    common = ["fit-classifier-heads", "--per-photo", "2", "--epochs", "1", "--data", str(tmp_path)]
    ct.fit_main_args(_parser().parse_args(common + ["--init", str(tmp_path / "init.safetensors"),
                                                    "--out", str(tmp_path / "a.safetensors"), "--min-side", "96"]))
    assert Classifier(load_classifier(tmp_path / "a.safetensors")).min_side == 96
    ct.fit_main_args(_parser().parse_args(common + ["--init", str(tmp_path / "a.safetensors"),
                                                    "--out", str(tmp_path / "b.safetensors")]))
    assert Classifier(load_classifier(tmp_path / "b.safetensors")).min_side == 96
    assert Classifier(load_classifier(tmp_path / "init.safetensors")).min_side == 0


@pytest.mark.cli
def test_set_classifier_min_side_keeps_the_tensors(tmp_path):
    import subprocess
    import sys
    from safetensors.torch import load_file
    from m3unet.auto.classifier import Classifier, load_classifier, save_classifier
    torch.manual_seed(0)
    path = tmp_path / "c.safetensors"
    save_classifier(DegradationClassifier(ClassifierConfig()), path, {"note": "kept"})
    before = load_file(str(path))
    run = lambda *a: subprocess.run([sys.executable, "-m", "m3unet", "set-classifier-min-side", *a],  # noqa: E731
                                    capture_output=True, text=True, cwd=Path(__file__).parents[1])
    r = run(str(path), "96")
    assert r.returncode == 0, r.stderr
    model = load_classifier(path)
    assert Classifier(model).min_side == 96 and model.metadata["note"] == "kept"
    after = load_file(str(path))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    (tmp_path / "x.safetensors").write_bytes(b"junk")
    r = run(str(tmp_path / "x.safetensors"), "96")
    assert r.returncode == 2 and "not a DegradationClassifier" in r.stderr and "Traceback" not in r.stderr


def test_fit_heads_refits_the_crop_head_only_when_asked(tmp_path, monkeypatch):
    from m3unet.training import classifier as ct
    torch.manual_seed(0)
    photos = [(_textured(i, 160) * 255).round().to(torch.uint8) for i in range(3)]
    monkeypatch.setattr(ct, "_photos", lambda data, split: photos)
    model = DegradationClassifier(ClassifierConfig()).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kw = dict(data=str(tmp_path), per_photo=4, epochs=2, val_photos=1, log=lambda s: None)
    kept = ct.fit_heads(model, **kw)
    assert all(torch.equal(kept.state_dict()[k], before[k]) for k in before if k.startswith(("head.", "local.")))
    refit = ct.fit_heads(model, crop_head=True, **kw)
    assert not torch.equal(refit.state_dict()["head.2.weight"], before["head.2.weight"])
    assert all(torch.equal(refit.state_dict()[k], before[k]) for k in before if k.startswith(("local.", "glob.")))
    with pytest.raises(ValueError, match="--crop-head"):
        ct.fit_heads(model, crop_head=True, add=True, image_labels=["blur", "motion", "lowres", "haze"], **kw)


def test_depth_of_field_keeps_a_sharp_subject_and_defocuses_the_rest(tmp_path, monkeypatch):
    """The bokeh augmentation of fit-classifier-heads --dof: a seeded, size-keeping change that
    leaves 15-60 % of the region as it was (the subject) and defocuses the rest like a blur would;
    --dof outside 0..1 is refused before any work."""
    from m3unet.training import classifier as ct
    x = clean_coffee()[:, :192, :224]
    a = ct.depth_of_field(x, torch.Generator().manual_seed(5))
    b = ct.depth_of_field(x, torch.Generator().manual_seed(5))
    assert a.shape == x.shape and torch.equal(a, b)
    for seed in range(6):
        y = ct.depth_of_field(x, torch.Generator().manual_seed(seed))
        diff = (y - x).abs().amax(0)
        kept = float((diff < 2 / 255).float().mean())
        assert 0.1 < kept < 0.75, (seed, kept)
        # where it changed, it lost fine detail (a defocus), not gained it
        changed = diff > 8 / 255
        hp = lambda t: (t[:, 1:, 1:] - t[:, :-1, 1:]).abs() + (t[:, 1:, 1:] - t[:, 1:, :-1]).abs()  # noqa: E731
        m = changed[1:, 1:]
        assert float(hp(y)[:, m].mean()) < 0.7 * float(hp(x)[:, m].mean())
    photos = [(_textured(i, 160) * 255).round().to(torch.uint8) for i in range(3)]
    monkeypatch.setattr(ct, "_photos", lambda data, split: photos)
    with pytest.raises(ValueError, match="dof"):
        ct.fit_heads(DegradationClassifier(ClassifierConfig()), data=str(tmp_path), per_photo=2, epochs=1,
                     val_photos=1, dof=1.5, log=lambda s: None)
    fitted = ct.fit_heads(DegradationClassifier(ClassifierConfig()), data=str(tmp_path), per_photo=4, epochs=1,
                          val_photos=1, dof=0.5, log=lambda s: None)
    assert fitted.image_head is not None


def test_calibration_offsets_move_each_labels_decision_and_keep_the_tensors(tmp_path):
    """set-classifier-calibration records per-label logit offsets in the file; Classifier reads a label
    from sigmoid(logit - offset), so a positive offset makes that label (and only it) harder to read;
    calibrated=False reads the raw probabilities; bad offsets are clear errors and leave the file."""
    import subprocess
    import sys
    from safetensors.torch import load_file
    from m3unet.auto.classifier import ClassifierError, parse_calibration, record_calibration
    torch.manual_seed(0)
    path = tmp_path / "c.safetensors"
    save_classifier(DegradationClassifier(ClassifierConfig()), path, {"min_side": "96"})
    before = load_file(str(path))
    image = as_image(clean_coffee()[:, :160, :160])
    raw = Classifier(load_classifier(path))(image)[0].probabilities
    run = lambda *a: subprocess.run([sys.executable, "-m", "m3unet", "set-classifier-calibration", *a],  # noqa: E731
                                    capture_output=True, text=True, cwd=Path(__file__).parents[1])
    r = run(str(path), "noise=2.5,haze=-1")
    assert r.returncode == 0, r.stderr
    clf = Classifier(load_classifier(path))
    assert clf.calibration == {"noise": 2.5, "haze": -1.0} and clf.min_side == 96
    p = clf(image)[0].probabilities
    logit = lambda q: float(torch.logit(torch.tensor(q, dtype=torch.float64)))  # noqa: E731
    assert logit(p["noise"]) == pytest.approx(logit(raw["noise"]) - 2.5, abs=2e-2)
    assert logit(p["haze"]) == pytest.approx(logit(raw["haze"]) + 1.0, abs=2e-2)
    assert all(p[k] == raw[k] for k in LABELS if k not in ("noise", "haze"))
    assert Classifier(load_classifier(path), calibrated=False)(image)[0].probabilities == raw
    after = load_file(str(path))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    for bad, words in (("sharpness=1", "the labels are"), ("noise", "write LABEL=OFFSET"),
                       ("noise=big", "must be a number"), ("noise=40", "between -10 and 10")):
        r = run(str(path), bad)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, (bad, r.stderr)
    assert Classifier(load_classifier(path)).calibration == {"noise": 2.5, "haze": -1.0}
    with pytest.raises(ClassifierError, match="JSON object"):
        parse_calibration("{not json")
    record_calibration(path, {})
    assert Classifier(load_classifier(path)).calibration == {}
    r = run(str(tmp_path / "missing.safetensors"), "noise=1")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_offsets_given_at_the_call_replace_the_files_calibration_for_the_labels_they_name(tmp_path):
    """The restore acts at its own decision points: Classifier(image, offsets=...) reads the labels
    named there at those offsets and every other label at the file's; unknown labels are clear errors."""
    from m3unet.auto.classifier import ClassifierError, record_calibration
    torch.manual_seed(0)
    path = tmp_path / "c.safetensors"
    save_classifier(DegradationClassifier(ClassifierConfig()), path)
    image = as_image(clean_coffee()[:, :160, :160])
    raw = Classifier(load_classifier(path))(image)[0].probabilities
    record_calibration(path, {"noise": 3.0, "haze": -2.0, "jpeg": 1.0})
    clf = Classifier(load_classifier(path))
    read = clf(image)[0].probabilities
    acting = clf(image, offsets={"noise": 0.0, "blur": 1.5})[0].probabilities
    logit = lambda q: float(torch.logit(torch.tensor(q, dtype=torch.float64)))  # noqa: E731
    assert acting["noise"] == raw["noise"] and read["noise"] < raw["noise"]
    assert logit(acting["blur"]) == pytest.approx(logit(raw["blur"]) - 1.5, abs=2e-2)
    assert acting["haze"] == read["haze"] and acting["jpeg"] == read["jpeg"] and acting["motion"] == raw["motion"]
    assert clf(image, offsets={})[0].probabilities == read
    with pytest.raises(ClassifierError, match="sharpness"):
        clf(image, offsets={"sharpness": 1.0})
    # the same reading re-decided at other offsets and threshold, without running the network again
    once = clf(image)[0]
    again = clf.decide_at(once, {"noise": 0.0, "blur": 1.5}, threshold=0.3)
    assert again.probabilities == acting and again.severity == once.severity and again.threshold == 0.3
    assert again.labels == [k for k in sorted(acting, key=lambda k: -once.severity[k]) if acting[k] >= 0.3]
    assert clf.decide_at(once).probabilities == read
    with pytest.raises(ClassifierError, match="logits"):
        clf.decide_at(type(once)(once.probabilities, once.severity))


def test_the_restore_reads_at_its_policys_decision_points_and_classify_plans_as_it_would(tmp_path):
    """A file calibrated to hardly ever report noise: its reading (classify's `detected`) lacks noise on
    a noisy photo, while the automatic restore, acting on noise at offset 0 (act_offsets), reads it and
    plans it, and classify's `plan` (the restore's) has the noise step."""
    import json
    import subprocess
    import sys
    from m3unet.auto.classifier import record_calibration
    from m3unet.auto.policy import DEFAULT_POLICY
    from m3unet.auto.pool import Pool
    from m3unet.auto.restorer import AutoRestorer
    path = tmp_path / "c.safetensors"
    path.write_bytes(DEFAULT_CLASSIFIER.read_bytes())
    record_calibration(path, {"noise": 9.0})
    torch.manual_seed(1)
    noisy = (clean_coffee()[:, :192, :192] + torch.randn(3, 192, 192) * 25 / 255).clamp(0, 1)
    clf = Classifier(load_classifier(path))
    assert "noise" not in clf(as_image(noisy))[0].labels
    assert DEFAULT_POLICY.act_offsets.get("noise") == 0.0
    restorer = AutoRestorer(Pool(None, []), clf)
    assert "noise" in restorer.classify(noisy).labels
    shifted = AutoRestorer(Pool(None, []), clf, policy=DEFAULT_POLICY.replace(act_offsets={}))
    assert "noise" not in shifted.classify(noisy).labels
    Image.fromarray((as_image(noisy)[0] * 255).round().to(torch.uint8).numpy()).save(tmp_path / "noisy.png")
    r = subprocess.run([sys.executable, "-m", "m3unet", "classify", "--classifier", str(path), str(tmp_path / "noisy.png")],
                       capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert "noise" not in rec["detected"] and any(s["task"] == "noise" or "noise" in s.get("also", [])
                                                  for s in rec["plan"])


def test_validation_samples_are_what_eval_classifier_reads_in_order_and_seeded(monkeypatch):
    """validation_samples yields per photo `per_photo` clean, single and mixed regions interleaved, then
    `per_photo` bokeh regions per photo; the same seed gives the same samples, and evaluate_classifier
    counts exactly those (its clean and bokeh tallies and the true labels of its singles and mixtures)."""
    import m3unet.training.data as data
    from m3unet.training.classifier import evaluate_classifier, validation_samples
    photos = {f"p{i}": (np.random.default_rng(i).random((96, 112, 3)) * 255).astype(np.uint8) for i in range(2)}
    monkeypatch.setattr(data, "evaluation_photos", lambda d, split="validation": photos)
    a = list(validation_samples(None, "validation", per_photo=2, region=64, seed=3))
    b = list(validation_samples(None, "validation", per_photo=2, region=64, seed=3))
    modes = [m for m, _, _ in a]
    assert modes == ["clean", "single", "mixture"] * 4 + ["bokeh"] * 4
    assert all(torch.equal(x, y) for (_, x, _), (_, y, _) in zip(a, b))
    assert all(x.shape == (3, 64, 64) and x.dtype == torch.float32 for _, x, _ in a)
    assert all(len(d) == 1 for m, _, d in a if m == "single") and all(len(d) >= 2 for m, _, d in a if m == "mixture")
    assert all(not d for m, _, d in a if m in ("clean", "bokeh"))
    torch.manual_seed(0)
    out = evaluate_classifier(DegradationClassifier(ClassifierConfig()), per_photo=2, region=64, seed=3)
    assert out["photos"] == 2
    truths = sum(1 for m, _, d in a if m in ("single", "mixture") for _ in {deg.LABEL[x.kind] for x in d})
    assert sum(tp + fn for kind in out["counts"].values() for tp, fp, fn in kind.values()) == truths
