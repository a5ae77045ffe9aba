"""DegradationClassifier mechanics (the trained weights and their accuracy belong to issue 3)."""
from __future__ import annotations

import torch

from m3unet import degradation as deg
from m3unet.classify import LABELS, Classifier, DegradationClassifier, Finding, load_classifier, save_classifier, targets, views


def test_views_targets_and_forward_shapes():
    model = DegradationClassifier()
    img = torch.rand(3, 150, 200)
    crops, whole = views(img, model.config)
    assert crops.shape == (model.config.crops, 3, 96, 96) and whole.shape == (3, 128, 128)
    small_crops, _ = views(torch.rand(3, 40, 50), model.config)  # smaller than a crop: padded up
    assert small_crops.shape[-2:] == (96, 96)
    y, s = targets([deg.make("poisson", 0.7), deg.make("jpeg", 0.2)])
    assert y[LABELS.index("noise")] == 1 and y[LABELS.index("jpeg")] == 1 and y.sum() == 2
    assert abs(float(s[LABELS.index("noise")]) - 0.7) < 1e-6
    logits, sev = model(crops[None], whole[None])
    assert logits.shape == sev.shape == (1, len(LABELS)) and (0 <= sev).all() and (sev <= 1).all()


def test_finding_text_and_round_trip(tmp_path):
    f = Finding({k: 0.0 for k in LABELS} | {"motion": 0.9, "noise": 0.8},
                {k: 0.0 for k in LABELS} | {"motion": 0.5, "noise": 0.1})
    assert f.labels == ["motion", "noise"]
    assert f.restoration_text() == "remove the moderate motion blur, then remove the light noise"
    assert "motion: moderate" in f.report()
    model = DegradationClassifier()
    save_classifier(model, tmp_path / "c.safetensors")
    loaded = load_classifier(tmp_path / "c.safetensors")
    out = Classifier(loaded)(torch.rand(2, 64, 80, 4))
    assert len(out) == 2 and set(out[0].probabilities) == set(LABELS)
