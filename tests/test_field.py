"""Measured against the field: no-reference metrics, peers, OCR, and the bench/eval modes (small sizes)."""
from __future__ import annotations

import json

import pytest
import torch
from skimage import data

from m3unet.training import synthesis as deg
from m3unet.evaluation import field_bench, peers
from m3unet.evaluation import ocr as ocr_eval
from m3unet.training.data import center_crop
from m3unet.evaluation.field import blur_kernel, field_settings
from m3unet.core.metrics import psnr
from m3unet.evaluation.noref import brisque, niqe
from m3unet.training.textimage import render_line
from test_cli import m3unet

pytestmark = pytest.mark.cli


def _photo(name: str = "chelsea", size: int = 288) -> torch.Tensor:
    return center_crop(getattr(data, name)(), size)


def test_niqe_matches_basicsr_reference_value():
    # BasicSR 1.4.2 calculate_niqe(chelsea[..., ::-1], 0) = 2.6255 (its code run on this machine).
    assert niqe(data.chelsea()) == pytest.approx(2.6255, abs=2e-3)


@pytest.mark.parametrize("metric", [niqe, brisque])
def test_no_reference_metrics_prefer_the_sharp_photo(metric):
    x = _photo()
    blurred = deg.convolve(x, deg.gaussian_kernel(2.0))
    noisy = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert metric(blurred) > metric(x) + 1, metric.__name__
    assert metric(noisy) > metric(x) + 1, metric.__name__


def test_niqe_rejects_tiny_images_clearly():
    with pytest.raises(ValueError, match="at least 96x96"):
        niqe(torch.rand(3, 50, 200))


def test_waifu2x_beats_bicubic_and_realesrgan_keeps_colours():
    x = _photo("astronaut", 128)
    small = peers.downsample(x, 2)
    bicubic = peers.resize(small, (128, 128))
    w2x = peers.super_resolve("waifu2x", small, (128, 128), threads=1)
    assert psnr(w2x, x) > psnr(bicubic, x) + 0.3
    up = peers.ncnn_upscale("realesrgan", small[:, :24, :40], threads=1)
    assert up.shape == (3, 96, 160)
    ref = peers.resize(small[:, :24, :40], (96, 160))
    assert (up.mean((1, 2)) - ref.mean((1, 2))).abs().max() < 0.03  # RGB order and 0-1 range are right
    assert psnr(up, ref) > 20


@pytest.mark.parametrize("setting", ["blur2", "motion"])
def test_true_kernel_deconvolution_improves(setting):
    x = _photo("coffee", 128)
    degs = field_settings()[setting]
    y = deg.apply(x, degs, torch.Generator().manual_seed(0))
    k = blur_kernel(degs)
    assert psnr(peers.wiener(y, k, 3e-3), x) > psnr(y, x) + 2
    assert psnr(peers.richardson_lucy(y, k, 30), x) > psnr(y, x) + 1


def test_ocr_reads_a_clean_rendered_line():
    text = "Harbour Road 17, Kingsbridge"
    assert ocr_eval.char_accuracy(ocr_eval.read_line(render_line(text, "DejaVuSans.ttf", 24), 1), text) >= 0.95
    assert ocr_eval.edit_distance("kitten", "sitting") == 3
    assert ocr_eval.char_accuracy("Ｈａｒｂｏｕｒ  Road", "Harbour Road") == 1.0  # full-width and spaces folded
    assert ocr_eval.char_accuracy("", "abc") == 0.0


def test_ocr_lines_avoid_training_words():
    from m3unet.training.textimage import WORDS
    words = {w.strip(",.:;'").lower() for line in ocr_eval.LINES for w in line.split()}
    shared = words & {w.lower() for w in WORDS}
    assert len(shared) <= 0.2 * len(words), shared  # only function words in common (9 of 57)


@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
def test_unet_step_timing_on_a_tiny_unet_of_each_family(kind):
    cfg = dict(field_bench.UNET_CONFIGS[kind])
    n = len(cfg.get("down_block_types", (0,) * 4))
    cfg.update(block_out_channels=(32,) * n, norm_num_groups=8, cross_attention_dim=16, attention_head_dim=4,
               sample_size=8)
    if kind == "sdxl":
        cfg.update(transformer_layers_per_block=1, addition_time_embed_dim=8,
                   projection_class_embeddings_input_dim=16 + 6 * 8)
    unet = field_bench.build_unet(kind, cfg)
    wall, cpu = field_bench.unet_step_seconds(unet, 8)
    assert wall > 0 and cpu > 0


def test_bench_peers_smoke(tmp_path):
    js, png = tmp_path / "b.json", tmp_path / "b.png"
    r = m3unet("bench", "--peers", "--sizes", "64,128", "--methods", "m3unet,nlm,bm3d,realesrgan",
               "--bm3d-size", "64", "--resr-max-input", "16", "--threads", "1", "--json", str(js), "--plot", str(png))
    assert r.returncode == 0, r.stderr
    rows = json.loads(js.read_text())["rows"]
    methods = {x["method"] for x in rows}
    assert methods == {"m3unet-1", "nlm", "bm3d", "realesrgan", "realesrgan-same"}
    assert all(x["seconds"] > 0 and x["peak_rss_mb"] > 0 and x["x_m3unet"] is not None for x in rows)
    bm3d = {x["size"]: x for x in rows if x["method"] == "bm3d"}
    assert bm3d[128]["estimate"] and bm3d[128]["seconds"] == pytest.approx(4 * bm3d[64]["seconds"], rel=0.05, abs=0.05)
    assert "| M3UNet, 1 step |" in r.stdout and png.stat().st_size > 10_000


def test_eval_peers_smoke(tmp_path):
    js, png = tmp_path / "e.json", tmp_path / "e.png"
    r = m3unet("eval", "--peers", "--crop", "96", "--max-photos", "1", "--settings", "noise25,motion,lowres2x",
               "--sweep", "1,2", "--threads", "1", "--json", str(js), "--plot", str(png))
    assert r.returncode == 0, r.stderr
    res = json.loads(js.read_text())
    t = res["table"]
    assert {"input", "bm3d", "m3unet_1step", "m3unet_2step"} <= set(t["noise25"])
    assert {"rl_true_kernel", "wiener_true_kernel"} <= set(t["motion"])
    assert {"waifu2x", "realesrgan"} <= set(t["lowres2x"])
    assert all(set(v) == {"psnr", "ssim", "niqe", "brisque"} for row in t.values() for v in row.values())
    assert t["noise25"]["bm3d"]["psnr"] > t["noise25"]["input"]["psnr"] + 3
    assert "NIQE / BRISQUE" in r.stdout and png.stat().st_size > 10_000


def test_eval_ocr_smoke(tmp_path):
    js = tmp_path / "o.json"
    r = m3unet("eval", "--ocr", "--lines", "1", "--settings", "noise,lowres", "--threads", "1", "--json", str(js))
    assert r.returncode == 0, r.stderr
    res = json.loads(js.read_text())
    assert res["table"]["clean"]["input"] >= 0.95
    for s in ("noise", "lowres"):
        row = res["table"][s]
        assert {"input", "m3unet_1step", "auto", "realesrgan", "classical"} <= set(row)
        assert all(0 <= v <= 1 for v in row.values())
    assert "| noise |" in r.stdout and "auto - input" in r.stdout


def test_ocr_validation_lines_are_not_the_test_lines_and_choose_checkpoints():
    """``eval --ocr-validation``: seeded random-word lines in the test's fonts and sizes, none of them a
    test line; the command reads the degraded lines and one M3UNet pass of the given model."""
    val = ocr_eval.validation_lines()
    assert len(val) == 48 and val == ocr_eval.validation_lines()
    assert not {t for t, _, _ in val} & set(ocr_eval.LINES)
    assert {f for _, f, _ in val} == set(ocr_eval.FONTS) and {s for _, _, s in val} == set(ocr_eval.SIZES)
    r = m3unet("eval", "--ocr-validation", "--lines", "2", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "OCR validation (2 lines, lowres, 1 step, shipped default): input" in r.stdout and "M3UNet" in r.stdout
    r = m3unet("eval", "--ocr-validation", "--settings", "haze")
    assert r.returncode == 2 and "--ocr-validation takes one of" in r.stderr and "Traceback" not in r.stderr


def test_unknown_peer_settings_are_clear_errors():
    r = m3unet("eval", "--peers", "--settings", "haze")
    assert r.returncode == 2 and "unknown setting" in r.stderr and "Traceback" not in r.stderr
