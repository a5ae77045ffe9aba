"""Kernel-aware deblurring (m3unet.auto.deblur): deconvolution, the blur estimator, the pool candidate."""
from __future__ import annotations

import json

import pytest
import torch

from m3unet.training import synthesis as deg
from m3unet.auto.deblur import ESTIMATOR_FILE, BlurEstimator, BlurEstimatorError, KernelDeblur, balance_for, estimate, load_estimator, shipped_kernel_deblur, textured_crops, wiener_deconvolve
from m3unet.training.blur_estimator import save_estimator
from m3unet.core.metrics import psnr
from m3unet.auto.pool import Pool
from m3unet.auto.plan import Step



def _photo(size: int = 192) -> torch.Tensor:
    import skimage.data  # astronaut: a held-out photo, never used to train anything shipped
    a = skimage.data.astronaut()[100:100 + size, 150:150 + size]
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255


def test_wiener_with_the_true_kernel_restores_detail_and_keeps_the_mean_colour():
    x = _photo()
    y = deg.convolve(x, deg.gaussian_kernel(2.0)).clamp(0, 1)
    out = wiener_deconvolve(y, 2.0, 0.001).clamp(0, 1)
    assert out.shape == y.shape and out.dtype == y.dtype
    assert psnr(out, x) > psnr(y, x) + 3
    smooth = wiener_deconvolve(y, 2.0, 10.0)  # even a heavy regulariser keeps the mean colour
    assert (smooth.mean((1, 2)) - y.mean((1, 2))).abs().max() < 1e-3
    assert not (out - y).abs().max() < 1e-3  # it did something


def test_tiled_deconvolution_matches_the_whole_image():
    x = _photo(256)
    y = deg.convolve(x, deg.gaussian_kernel(3.0)).clamp(0, 1)[:, :, :200]
    whole = wiener_deconvolve(y, 3.0, 0.001, tile=1024)
    tiled = wiener_deconvolve(y, 3.0, 0.001, tile=96)  # 3 x 3 tiles, margins of 64 px
    assert tiled.shape == y.shape and (tiled - whole).abs().max() < 1e-3


def test_blockiness_tells_jpeg_blocks_from_blur_at_any_grid_phase():
    from m3unet.auto.deblur import BLOCKY, blockiness
    x = _photo(192)
    blurred = deg.convolve(x, deg.gaussian_kernel(2.0)).clamp(0, 1)
    blocky = deg.jpeg(blurred, 15)
    assert blockiness(x) < BLOCKY and blockiness(blurred) < BLOCKY
    assert blockiness(blocky) > BLOCKY + 0.1
    assert blockiness(blocky[:, 3:, 5:]) > BLOCKY + 0.1  # a crop off the 8 px grid
    assert blockiness(torch.rand(3, 10, 10)) == 1.0   # too small to say
    assert blockiness(blocky[:, :40]) > BLOCKY + 0.1  # a strip: its long direction still shows the blocks


def test_balance_grows_with_noise_and_is_bounded():
    assert balance_for(0.0) == balance_for(2.0) == pytest.approx(0.003)
    assert balance_for(2.0) < balance_for(5.0) < balance_for(10.0) <= 0.1
    assert balance_for(50.0) == pytest.approx(0.1)


def test_textured_crops_handle_small_and_flat_images():
    assert textured_crops(torch.rand(3, 20, 30)).shape[1:] == (1, 64, 64)
    x = torch.zeros(3, 256, 256)
    x[:, :, 128:] = torch.rand(3, 256, 128)  # texture only on the right half
    crops = textured_crops(x)
    assert crops.shape[0] >= 1 and all(float(c.std()) > 0.1 for c in crops)


def test_estimator_file_round_trip_and_clear_errors(tmp_path):
    m = BlurEstimator(width=8)
    f = tmp_path / "est.safetensors"
    save_estimator(m, f)
    back = load_estimator(f)
    x = torch.rand(2, 1, 64, 64)
    assert torch.allclose(back(x), m.eval()(x))
    from safetensors.torch import save_file
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(BlurEstimatorError, match="not a blur estimator"):
        load_estimator(other)
    with pytest.raises(ValueError, match="missing|not found|does not exist"):
        load_estimator(tmp_path / "absent.safetensors")
    pickled = tmp_path / "est.pt"
    torch.save(m.state_dict(), pickled)
    with pytest.raises(ValueError):
        load_estimator(pickled)


@pytest.mark.skipif(not ESTIMATOR_FILE.exists(), reason="the shipped estimator is committed with the repo")
def test_shipped_estimator_reads_blur_and_noise_of_a_held_out_photo():
    est = load_estimator()
    x = _photo(256)
    for sigma, noise in [(1.0, 2.0), (2.0, 2.0), (3.0, 5.0)]:
        y = (deg.convolve(x, deg.gaussian_kernel(sigma)) + noise / 255 * torch.randn(
            x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
        e = estimate(est, y)
        assert abs(e.sigma - sigma) < 0.5, (sigma, e)
        assert abs(e.noise - noise) < 3, (noise, e)
    assert estimate(est, x).sigma < 0.8  # the sharp photo
    tool = KernelDeblur(est, _Identity())
    y = deg.convolve(x, deg.gaussian_kernel(2.0)).clamp(0, 1)
    assert tool.would_deconvolve(tool.reading(y))
    assert not tool.would_deconvolve(tool.reading(deg.jpeg(y, 15)))  # blocks: no deconvolution
    assert tool.would_deconvolve(tool.reading(deg.jpeg(y, 15), sigma=2.0))  # unless the blur is given


class _Identity:
    """A Restorer stand-in that records its calls (the clean-up pass)."""

    def __init__(self):
        self.texts = []

    def restore(self, image, text="", steps=1, seed=0, tile=512, progress=None):
        self.texts.append(text)
        if progress:
            progress(None)
        return image.clone()


def test_kernel_deblur_runs_in_the_pool_when_named():
    torch.manual_seed(0)
    est = BlurEstimator(width=8).eval()
    rec = _Identity()
    tool = KernelDeblur(est, rec)
    pool = Pool(rec, [tool])
    # not a candidate of ordinary steps (the classifier judges those), but a plan can name it
    assert "kernel-deblur" not in pool.candidates(Step("blur")) + pool.candidates(Step("noise"))
    assert pool.candidates(Step("blur", model="kernel-deblur")) == ["kernel-deblur"]
    x = _photo(96)
    checks = []
    out = pool.run("kernel-deblur", x, Step("blur"), seed=0, check=lambda fraction=None: checks.append(fraction))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert rec.texts == ["remove the light noise"] and checks and all(0 <= c <= 1 for c in checks)
    assert tool.last is not None and "blur sigma" in tool.last.describe()
    assert KernelDeblur(est, rec).restore(x.permute(1, 2, 0)[None]).shape == (1, 96, 96, 3)
    # grey and RGBA uint8 batches keep their channels and dtype; alpha passes through the deconvolution
    rgba = torch.cat([(x.permute(1, 2, 0) * 255).round().to(torch.uint8), torch.full((96, 96, 1), 77, dtype=torch.uint8)], -1)
    out = tool.restore(torch.stack([rgba, rgba]), sigma=1.5, noise=2.0)
    assert out.shape == (2, 96, 96, 4) and out.dtype == torch.uint8 and (out[..., 3] == 77).all()
    assert [e.sigma for e in tool.estimates] == [1.5, 1.5]
    assert tool.restore(x.permute(1, 2, 0)[None, ..., :1]).shape == (1, 96, 96, 1)
    assert shipped_kernel_deblur(None) == []


@pytest.mark.cli
def test_train_blur_estimator_smoke(tmp_path):
    from test_cli import _tiny_photos, m3unet
    data = _tiny_photos(tmp_path)
    out = tmp_path / "est.safetensors"
    r = m3unet("train-blur-estimator", "--data", str(data), "--out", str(out), "--steps", "3", "--batch", "4",
               "--width", "8", "--threads", "1")
    assert r.returncode == 0, r.stderr
    log = [json.loads(line) for line in out.with_suffix(".train-log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 3 and "val_sigma_mae" in log[-1]
    assert load_estimator(out).width == 8
    card = out.with_suffix(".md").read_text()
    assert "train-blur-estimator" in card and "rocket" in card and "val_sigma_mae" in card
