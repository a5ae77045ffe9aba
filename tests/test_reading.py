"""The reading the pack reports (m3unet.auto.reading): the classifier, with motion also read from the spectrum."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from m3unet.auto.classifier import DEFAULT_CLASSIFIER, Classifier, load_classifier, record_calibration
from m3unet.auto.motion import line_kernel
from m3unet.auto.policy import DEFAULT_POLICY
from m3unet.auto.reading import Reader, motion_severity
from m3unet.training import synthesis as deg

REPO = Path(__file__).resolve().parents[1]


def _photo(size: int = 256) -> torch.Tensor:
    import skimage.data  # a validation photo, never used to train anything shipped
    a = skimage.data.coffee()[60:60 + size, 120:120 + size]
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255


def _image(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().div(255).permute(1, 2, 0)[None]


@pytest.fixture(scope="module")
def blind(tmp_path_factory) -> Classifier:
    """The shipped classifier with its motion output pushed out of reach (offset +10 logits)."""
    path = tmp_path_factory.mktemp("clf") / "c.safetensors"
    path.write_bytes(DEFAULT_CLASSIFIER.read_bytes())
    record_calibration(path, {"motion": 10.0})
    return Classifier(load_classifier(path))


def test_motion_the_classifier_misses_is_read_from_the_spectrum_with_what_was_read(blind):
    shaken = deg.convolve(_photo(), line_kernel(17.0, 30.0)).clamp(0, 1)
    assert "motion" not in blind(_image(shaken))[0].labels
    f = Reader(blind)(_image(shaken))[0]
    assert "motion" in f.labels and "motion" in f.spectral and "px at" in f.spectral["motion"]
    assert f.probabilities["motion"] < 0.5  # the network's probability is reported as it is
    assert f.severity["motion"] >= motion_severity(16.0) and motion_severity(17.0) == pytest.approx(0.6)
    assert "from the spectrum" in f.report() and f.to_dict()["spectral"]["motion"] == f.spectral["motion"]
    assert "motion" in f.restoration_text()
    off = Reader(blind, spectral_motion=False)(_image(shaken))[0]
    assert "motion" not in off.labels and not off.spectral
    assert DEFAULT_POLICY.spectral_motion_reading is True
    assert "motion" not in Reader(blind, DEFAULT_POLICY.replace(spectral_motion_reading=False))(_image(shaken))[0].labels


def test_clean_small_and_printed_images_are_read_by_the_classifier_alone(blind):
    clean = Reader(blind)(_image(_photo()))[0]
    assert not clean.spectral
    small = deg.convolve(_photo(80), line_kernel(13.0, 30.0)).clamp(0, 1)
    assert Reader(blind).min_side == 96 and not Reader(blind)(_image(small))[0].spectral
    page = torch.ones(3, 256, 256)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):  # dark strokes on white paper
        y, x = int(torch.randint(8, 240, (1,), generator=g)), int(torch.randint(8, 200, (1,), generator=g))
        page[:, y:y + 3, x:x + 40] = 0.05
    printed = deg.convolve(page, line_kernel(13.0, 0.0)).clamp(0, 1)
    assert not Reader(blind)(_image(printed))[0].spectral


def test_classify_reports_the_spectral_reading_unless_asked_not_to(blind, tmp_path):
    """`classify` lists motion read from the spectrum in `detected` and `spectral`; --no-spectral-motion
    reads with the classifier alone."""
    path = tmp_path / "c.safetensors"
    path.write_bytes(DEFAULT_CLASSIFIER.read_bytes())
    record_calibration(path, {"motion": 10.0})
    shaken = deg.convolve(_photo(), line_kernel(17.0, 30.0)).clamp(0, 1)
    Image.fromarray((shaken.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()).save(tmp_path / "shaken.png")
    run = lambda *a: subprocess.run([sys.executable, "-m", "m3unet", "classify", "--classifier", str(path), *a,  # noqa: E731
                                     str(tmp_path / "shaken.png")], capture_output=True, text=True, cwd=REPO)
    r = run()
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert "motion" in rec["detected"] and "motion" in rec["spectral"]
    r = run("--no-spectral-motion")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert "motion" not in rec["detected"] and "spectral" not in rec


class _ReadsDarkAndHazy:
    """A stand-in classifier that reads heavy low light and haze on every image."""
    min_side = 0

    def __call__(self, image, offsets=None):
        from m3unet.auto.classifier import LABELS, Finding
        p = {k: 0.95 if k in ("lowlight", "haze") else 0.01 for k in LABELS}
        return [Finding(dict(p), {k: 0.6 if k in ("lowlight", "haze") else 0.0 for k in LABELS}) for _ in image]


def test_the_reading_leaves_out_what_the_images_tones_rule_out_and_says_why():
    """scene_limits_reading: low light on a dark scene whose highlights are brighter than an
    under-exposed photo's, and haze on an image that keeps deep blacks, move to Finding.scene with
    why (as the restore leaves them alone); an under-exposed, veiled image keeps both; off, nothing moves."""
    reader = Reader(_ReadsDarkAndHazy())
    ramp = torch.linspace(0.05, 0.3, 200).view(1, 1, 200).expand(3, 200, 200).clone()   # dim, no deep blacks
    under = ramp + 0.12                                                                   # veiled: black point 0.17
    scene = under.clone()
    scene[:, 10:30, 10:30] = 0.95                                                         # a lamp
    scene[:, 150:190, 150:190] = 0.02                                                     # a dark doorway
    f_under, f_scene = reader(_image(under))[0], reader(_image(scene))[0]
    assert set(f_under.labels) == {"lowlight", "haze"}
    assert not f_under.scene and "scene" not in f_under.to_dict()
    assert f_scene.labels == [] and set(f_scene.scene) == {"lowlight", "haze"}
    assert "a dark scene" in f_scene.scene["lowlight"] and "deep blacks" in f_scene.scene["haze"]
    assert f_scene.to_dict()["scene"] == f_scene.scene and f_scene.to_dict()["detected"] == []
    assert "lowlight read (p=0.95) but left out" in f_scene.report()
    assert f_scene.probabilities == f_under.probabilities  # the network's reading itself is kept
    off = Reader(_ReadsDarkAndHazy(), DEFAULT_POLICY.replace(scene_limits_reading=False))(_image(scene))[0]
    assert set(off.labels) == {"lowlight", "haze"} and not off.scene
    assert set(Reader(_ReadsDarkAndHazy(), scene_limits=False)(_image(scene))[0].labels) == {"lowlight", "haze"}
