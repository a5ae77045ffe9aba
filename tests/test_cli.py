"""The command line contract: restore, eval, bench, train (tiny smoke runs with the shipped weights)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.cli

REPO = Path(__file__).resolve().parent.parent


def m3unet(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "m3unet", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_restore_keeps_names_sizes_and_modes(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(rng.integers(0, 255, (40, 50), dtype=np.uint8)).save(src / "grey.png")
    Image.fromarray(rng.integers(0, 255, (33, 47, 4), dtype=np.uint8)).save(src / "rgba.png")
    Image.fromarray(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8)).save(src / "photo.jpg", quality=30)
    Image.fromarray(rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)).save(src / "pic.webp")
    (src / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    r = m3unet("restore", *map(str, sorted(src.iterdir())), "-o", str(out), "--steps", "2", "--seed", "3")
    assert r.returncode == 1, r.stderr  # one input was bad: reported, others still written
    assert "broken.png: not a readable image" in r.stderr
    expect = {"grey.png": ("L", (50, 40)), "rgba.png": ("RGBA", (47, 33)), "photo.png": ("RGB", (48, 64)),
              "pic.png": ("RGB", (36, 36))}
    for name, (mode, size) in expect.items():
        im = Image.open(out / name)
        assert (im.mode, im.size) == (mode, size), name
    alpha_in = np.asarray(Image.open(src / "rgba.png"))[..., 3]
    assert np.array_equal(np.asarray(Image.open(out / "rgba.png"))[..., 3], alpha_in)


@pytest.mark.parametrize("mode, gain", [("auto", 0.5), ("single", 0.05)])
def test_restore_example_improves_psnr_and_writes_comparison(tmp_path, mode, gain):
    """The README's first command: the bundled example (blur, noise and JPEG) gets better. Shipped
    step-18000 weights: 25.15 -> 25.93 dB automatic (the default), 25.24 dB one blind pass."""
    r = m3unet("restore", "assets/examples/coffee_degraded.png", "-o", str(tmp_path), "--reference",
               "assets/examples/coffee_clean.png", "--before-after", "--mode", mode)
    assert r.returncode == 0, r.stderr
    before, after = (float(v) for v in
                     __import__("re").search(r"PSNR before ([\d.]+) dB, after ([\d.]+) dB", r.stdout).groups())
    assert after > before + gain, r.stdout
    assert Image.open(tmp_path / "coffee_degraded_before_after.png").size == (600 * 2 + 8, 400)


def test_missing_model_is_a_clear_error(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"\x80\x04")
    r = m3unet("restore", "assets/examples/coffee_degraded.png", "-o", str(tmp_path), "--model", str(tmp_path / "x.pt"))
    assert r.returncode == 2 and "pickled checkpoints are refused" in r.stderr and "Traceback" not in r.stderr


def test_eval_smoke(tmp_path):
    js = tmp_path / "eval.json"
    r = m3unet("eval", "--crop", "64", "--settings", "noise25", "--baselines", "nlm,tv", "--steps", "2",
               "--json", str(js))
    assert r.returncode == 0, r.stderr
    row = json.loads(js.read_text())["table"]["noise25"]
    assert {"input", "nlm", "tv", "m3unet_1step", "m3unet_2step", "m3unet_1step_text", "auto"} <= set(row)
    assert row["auto"]["psnr"] > row["input"]["psnr"] + 2  # the default restore path (64 px: its blind pass)
    assert row["m3unet_1step"]["psnr"] > row["input"]["psnr"] + 2
    assert "| noise25 |" in r.stdout


def test_eval_small_sides_smoke(tmp_path):
    js = tmp_path / "small.json"
    r = m3unet("eval", "--small-sides", "48", "--json", str(js))
    assert r.returncode == 0, r.stderr
    row = json.loads(js.read_text())["rows"][0]
    assert row["side"] == 48 and set(row["mean"]) == {"input", "blind", "auto", "shipped"}
    assert row["noise25"]["blind"] > row["noise25"]["input"] + 2
    # as shipped, 48 px is under the classifier's minimum side: the blur estimator alone decides,
    # and it deconvolves the Gaussian blur of blur2 (one blind pass gains little there), except on
    # the one validation photo that passes the print test (small_print_routes leaves it as it is)
    assert row["blur2"]["shipped"] > row["blur2"]["blind"] + 0.5
    assert "| 48 |" in r.stdout


def test_bench_smoke(tmp_path):
    js = tmp_path / "bench.json"
    r = m3unet("bench", "--sizes", "64,128", "--steps", "2", "--json", str(js))
    assert r.returncode == 0, r.stderr
    rows = json.loads(js.read_text())
    assert [(x["size"], x["steps"]) for x in rows] == [(64, 1), (128, 1), (64, 2), (128, 2)]
    assert all(x["sec_per_mp"] > 0 and x["peak_rss_mb"] > 0 for x in rows)
    r = m3unet("bench", "--kernel-deblur", "--sizes", "64", "--json", str(js))
    assert r.returncode == 0, r.stderr
    assert [(x["size"], x["steps"]) for x in json.loads(js.read_text())] == [(64, "kernel-deblur")]


def _tiny_photos(tmp_path) -> Path:
    """A prepared-data folder of four scikit-image photos (two for training, one each for validation and test)."""
    import skimage.data
    data = tmp_path / "photos"
    photos = {"train": {"rocket": skimage.data.rocket(), "hubble": skimage.data.hubble_deep_field()},
              "validation": {"astronaut": skimage.data.astronaut()}, "test": {"coffee": skimage.data.coffee()}}
    entries = []
    for split, items in photos.items():
        (data / split).mkdir(parents=True)
        for name, arr in items.items():
            Image.fromarray(arr).save(data / split / f"{name}.png")
            entries.append({"id": name, "split": split, "file": f"{split}/{name}.png", "source": "skimage",
                            "licence": "see skimage", "original_sha256": "-"})
    (data / "manifest.json").write_text(json.dumps({"photos": entries}))
    return data


def test_train_smoke_and_resume(tmp_path):
    """A tiny real training run on held-out-free scikit-image photos, then a resume."""
    data = _tiny_photos(tmp_path)
    out = tmp_path / "run"
    common = ["train", "--data", str(data), "--out", str(out), "--batch", "2", "--crop", "64", "--width", "8",
              "--val-every", "2", "--save-every", "2"]
    r = m3unet(*common, "--steps", "2")
    assert r.returncode == 0, r.stderr
    assert (out / "model.safetensors").exists() and (out / "MODEL_CARD.md").exists()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any("val_psnr" in rec for rec in log)
    r = m3unet(*common, "--steps", "4", "--resume", str(out / "state.safetensors"))
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout and "at step 2" in r.stdout
    card = (out / "MODEL_CARD.md").read_text()
    assert "Steps: 4" in card and "rocket" in card
    # --init takes the file's architecture (width 8 here, no --width) and grows it by the block flags.
    grown = tmp_path / "grown"
    r = m3unet("train", "--data", str(data), "--out", str(grown), "--batch", "2", "--crop", "64", "--val-every", "2",
               "--save-every", "2", "--steps", "6", "--init", str(out / "model.safetensors"), "--mid-blocks", "3")
    assert r.returncode == 0, r.stderr
    assert "grown from" in r.stdout and "at step 4" in r.stdout
    from m3unet.core.weights import load_model
    cfg = load_model(grown / "model.safetensors").config
    assert cfg.width == 8 and cfg.mid_blocks == 3 and cfg.enc_blocks == [1, 1, 2]
    # --resume takes the state's architecture without flags, and refuses flags that would change it.
    resume = ["train", "--data", str(data), "--out", str(grown), "--batch", "2", "--crop", "64", "--val-every", "2",
              "--save-every", "2", "--resume", str(grown / "state.safetensors")]
    r = m3unet(*resume, "--steps", "8")
    assert r.returncode == 0, r.stderr
    assert "at step 6" in r.stdout and load_model(grown / "model.safetensors").config.mid_blocks == 3
    r = m3unet(*resume, "--steps", "10", "--mid-blocks", "4")
    assert r.returncode != 0 and "mid_blocks=3" in r.stderr and "--init" in r.stderr and "Traceback" not in r.stderr


def test_ablate_dilation_smoke(tmp_path):
    """Table 3 machinery: four tiny variants are trained, scored and tabulated; a re-run reuses them."""
    data = _tiny_photos(tmp_path)
    out, md = tmp_path / "abl", tmp_path / "table3.md"
    args = ["ablate-dilation", "--data", str(data), "--out", str(out), "--steps", "2", "--batch", "2",
            "--crop", "32", "--width", "8", "--settings", "blur2,noise25", "--eval-crop", "64", "--markdown", str(md)]
    r = m3unet(*args)
    assert r.returncode == 0, r.stderr
    for slug in ("D3", "D4", "D5", "D3-4-5"):
        assert (out / slug / "model.safetensors").exists()
    table = md.read_text()
    assert "| D=[3,4,5] | 29.99 / 0.723 |" in table and "Ordering by PSNR" in table
    r = m3unet(*args)
    assert r.returncode == 0 and "training" not in r.stdout, r.stdout
# ---------------------------------------------------------------------------- automatic restore
def _auto_inputs(tmp_path):
    """A noisy smooth PNG, an (untrained) classifier file and a spandrel Compact blur (1x and 2x)."""
    import torch
    from auto_helpers import add_noise, save_compact_blur, smooth_photo
    from m3unet.auto.classifier import DegradationClassifier, save_classifier
    arr = (add_noise(smooth_photo(64, 80), 0.08)[0].numpy() * 255).round().astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "noisy.png")
    torch.manual_seed(0)
    save_classifier(DegradationClassifier(), tmp_path / "classifier.safetensors")
    save_compact_blur(tmp_path / "compact.safetensors", 1)
    save_compact_blur(tmp_path / "compact2x.safetensors", 2)
    return arr


def test_restore_auto_with_pool_plan_and_report(tmp_path):
    arr = _auto_inputs(tmp_path)
    plan = json.dumps([{"task": "noise", "strength": 0.4, "model": "compact"}, {"task": "jpeg"}])
    r = m3unet("restore", str(tmp_path / "noisy.png"), "-o", str(tmp_path / "out"), "--classifier",
               str(tmp_path / "classifier.safetensors"), "--pool", f"{tmp_path / 'compact.safetensors'}=noise,jpeg",
               "--plan", plan, "--report-json", str(tmp_path / "report.jsonl"), "--seed", "2")
    assert r.returncode == 0, r.stderr
    assert "Step 1, noise:" in r.stdout and "automatic" in r.stdout
    rep = json.loads((tmp_path / "report.jsonl").read_text().splitlines()[0])
    assert rep["file"].endswith("noisy.png") and rep["plan"]["steps"][0]["model"] == "compact"
    assert [a["model"] for a in rep["steps"][0]["attempts"]] == ["compact"]
    assert [a["model"] for a in rep["steps"][1]["attempts"]] == ["compact", "m3unet"]  # "auto": the pool
    assert Image.open(tmp_path / "out" / "noisy.png").size == (80, 64)
    big = m3unet("restore", str(tmp_path / "noisy.png"), "-o", str(tmp_path / "big"), "--classifier",
                 str(tmp_path / "classifier.safetensors"), "--pool", f"{tmp_path / 'compact2x.safetensors'}=noise",
                 "--plan", '[{"task": "noise", "model": "compact2x"}]', "--upscale", "--before-after")
    assert big.returncode == 0, big.stderr
    assert Image.open(tmp_path / "big" / "noisy.png").size == (160, 128)
    assert arr.shape == (64, 80, 3)


def test_restore_auto_default_runs(tmp_path):
    """No options: the automatic path with the shipped model (and classifier, once it ships)."""
    _auto_inputs(tmp_path)
    r = m3unet("restore", str(tmp_path / "noisy.png"), "-o", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert "**Found:** not read: the image is too small" in r.stdout and "**Stopped:**" in r.stdout  # 80x64 px
    assert Image.open(tmp_path / "out" / "noisy.png").size == (80, 64)


@pytest.mark.parametrize("extra, message", [
    (["--plan", '[{"task": "nosie"}]'], "plan step 1: unknown task 'nosie'"),
    (["--plan", "missing.json"], "--plan 'missing.json': no such file"),
    (["--pool", "model.safetensors"], "write FILE=TASK"),
    (["--pool", "nowhere.safetensors=noise"], "model file not found"),
    (["--text", "remove the noise", "--budget", "2"], "belong to the automatic mode"),
    (["--leave", "shadows"], "'leave_alone': shadows unknown; choose from noise, blur"),
    (["--text", "remove the noise", "--leave", "lowlight"], "--leave and --policy belong to the automatic mode"),
])
def test_restore_auto_errors_are_clear(tmp_path, extra, message):
    _auto_inputs(tmp_path)
    r = m3unet("restore", str(tmp_path / "noisy.png"), "-o", str(tmp_path / "out"), "--classifier",
               str(tmp_path / "classifier.safetensors"), *extra)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_restore_leave_keeps_what_the_classifier_reads(tmp_path):
    """--leave: a classifier file built to read low light (p ~ 1, severity 0.6) and nothing else on
    any image; without --leave the automatic plan brightens, with --leave lowlight the report says it
    was read and left, and the file comes out as it went in."""
    import torch
    from auto_helpers import smooth_photo
    from m3unet.auto.classifier import LABELS, DegradationClassifier, save_classifier
    model = DegradationClassifier()
    n = len(LABELS)
    with torch.no_grad():
        for layer in (model.head[2], model.image_head[2]):
            layer.weight.zero_()
            layer.bias.zero_()
        model.head[2].bias[:n] = -8.0
        model.head[2].bias[LABELS.index("lowlight")] = 8.0
        model.head[2].bias[n + LABELS.index("lowlight")] = float(torch.logit(torch.tensor(0.6)))
    save_classifier(model, tmp_path / "reads-dark.safetensors")
    arr = (smooth_photo(160, 160)[0].numpy() * 0.4 * 255).round().astype(np.uint8)  # dark, no highlights
    Image.fromarray(arr).save(tmp_path / "dark.png")
    args = ["restore", str(tmp_path / "dark.png"), "--classifier", str(tmp_path / "reads-dark.safetensors"),
            "--no-kernel-deblur", "--no-specialists"]
    r = m3unet(*args, "-o", str(tmp_path / "auto"), "--report-json", str(tmp_path / "auto.jsonl"))
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "auto.jsonl").read_text().splitlines()[0])
    assert [s["task"] for s in rep["plan"]["steps"]] == ["lowlight"] and rep["first"]["left"] == []
    r = m3unet(*args, "--leave", "lowlight", "-o", str(tmp_path / "left"), "--report-json", str(tmp_path / "left.jsonl"))
    assert r.returncode == 0, r.stderr
    assert "darkness (low light) was read too, and left alone as asked" in r.stdout, r.stdout
    rep = json.loads((tmp_path / "left.jsonl").read_text().splitlines()[0])
    assert rep["plan"]["steps"] == [] and rep["first"]["left"] == ["lowlight"] and "leave_alone" in rep["rules"]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "left" / "dark.png").convert("RGB")), arr)


def test_plan_orders_and_eval_auto_smoke(tmp_path):
    _auto_inputs(tmp_path)
    out, md = tmp_path / "orders.json", tmp_path / "orders.md"
    r = m3unet("plan-orders", "--crop", "32", "--pairs", "1", "--triples", "0", "--out", str(out), "--md", str(md))
    assert r.returncode == 0, r.stderr
    table = json.loads(out.read_text())
    assert len(table["pairwise"]) == 20 and len(table["weights_sha256"]) == 64
    assert "| haze+noise | 1 |" in md.read_text()
    js = tmp_path / "auto.json"
    r = m3unet("eval", "--auto", "--crop", "32", "--per-set", "1", "--mixes", "jpeg+noise,blur+jpeg+noise",
               "--classifier", str(tmp_path / "classifier.safetensors"), "--json", str(js), "--mix-seed", "0")
    assert r.returncode == 0, r.stderr
    res = json.loads(js.read_text())
    assert set(res["sets"]) == {"jpeg+noise", "blur+jpeg+noise"} and res["seed"] == 0
    assert {"input", "single_blind", "planned_true", "best_fixed", "oracle", "auto"} <= set(res["mean"])
    for row in res["rows"]:
        assert row["oracle"] >= row["best_fixed"] >= min(row["orders"].values())
        assert row["best_fixed"] == row["orders"][row["best_fixed_order"]]
    assert "auto vs one blind M3UNet pass" in r.stdout and len(res["clean"]) == 2 * len(res["photos"])
def test_classify_prints_one_json_line_per_image(tmp_path):
    from m3unet.auto.classifier import LABELS
    Image.open(REPO / "assets" / "examples" / "coffee_clean.png").convert("L").save(tmp_path / "grey.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    r = m3unet("classify", "assets/examples/coffee_degraded.png", str(tmp_path / "broken.png"), str(tmp_path / "grey.png"),
               str(tmp_path / "missing.png"))
    assert r.returncode == 1, r.stderr  # bad files: reported (as restore does), the others still classified
    assert "broken.png: not a readable image" in r.stderr and "missing.png: no such image file" in r.stderr
    assert "Traceback" not in r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [Path(x["file"]).name for x in lines] == ["coffee_degraded.png", "grey.png"]
    for x in lines:
        assert set(x) >= {"file", "labels", "severity", "plan"}
        assert list(x["labels"]) == list(LABELS) and all(0 <= p <= 1 for p in x["labels"].values())
        assert set(x["severity"]) == set(LABELS)
        # In the measured order; sure camera degradations share a joint step ("also").
        assert sorted(t for s in x["plan"] for t in [s["task"], *s.get("also", {})]) == sorted(x["detected"])
        assert all(set(s) - {"also"} == {"task", "strength", "model", "text"} for s in x["plan"])
    assert lines[0]["plan"], lines[0]  # the example has blur, noise and JPEG


def test_classify_bad_classifier_and_threshold(tmp_path):
    r = m3unet("classify", "assets/examples/coffee_degraded.png", "--classifier", "weights/m3unet-default.safetensors")
    assert r.returncode == 2 and "not a DegradationClassifier checkpoint" in r.stderr and "Traceback" not in r.stderr
    r = m3unet("classify", "assets/examples/coffee_degraded.png", "--threshold", "1.5")
    assert r.returncode == 2 and "--threshold" in r.stderr


@pytest.mark.parametrize("split", ["holdout", "test"])
def test_unprepared_photos_are_a_clear_error(tmp_path, capsys, split):
    """Evaluating a split whose photos were never prepared names the folder and the fix, with no traceback."""
    from m3unet.cli.main import main
    assert main(["eval", "--stress", "--no-restore", "--split", split, "--data", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("error: "))
    assert "prepare-data" in line and str(tmp_path / "none") in line and "Traceback" not in err
