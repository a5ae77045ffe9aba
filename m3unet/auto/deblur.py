"""Kernel-aware deblurring: estimate the Gaussian (defocus) blur, deconvolve it, clean up with M3UNet.

A small M3UNet restores noise well but sharpens defocus blur little (``eval``: +0.56 dB blind on
blur sigma=2 px, validation photos). Deconvolution with the right kernel recovers most of what the blur
removed, and a learned restorer then removes what deconvolution leaves (amplified noise, ringing):
the two-stage scheme of Schuler et al., "A machine learning approach for non-blind image
deconvolution" (CVPR 2013) and of DPIR / USRNet (Zhang et al. 2020-21), where the kernel is known.
Here it is not, so a small CNN (:class:`BlurEstimator`) regresses the blur's sigma and the noise
level from grey 64 px crops (the idea of learned blur-parameter regression, e.g. Yan & Shao,
"Blind image blur estimation via deep learning", IEEE TIP 2016), trained on synthetic blur, noise
and JPEG of the training photos (``python -m m3unet train-blur-estimator``).

:class:`KernelDeblur` is a candidate of the model pool for the ``blur`` task: estimate ->
Wiener deconvolution (balance from the noise level) -> one M3UNet pass told to remove light noise.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.image import like_input, luminance
from ..core.weights import FileCache

CROP = 64          # estimator input side (px)
NOISE_UNIT = torch.tensor([1.0, 10.0])  # output scales: blur sigma in px, noise in 10/255 (similar ranges)
MAX_SIGMA = 4.0    # the estimator's output range (px); training blur goes to 3.6
ESTIMATOR_FILE = Path(__file__).resolve().parents[2] / "weights" / "blur-estimator.safetensors"


class BlurEstimatorError(ValueError):
    """A clear error about a blur estimator file or input."""


class BlurEstimator(nn.Module):
    """Grey ``[N, 1, 64, 64]`` crops -> ``[N, 2]``: Gaussian blur sigma (px) and noise sigma (1/255).

    Full-resolution convolutions first (a blur is a property of edge profiles), then three
    stride-2 stages and global average pooling; ~0.2 M parameters.
    """

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        layers: list[nn.Module] = []
        chans = [(1, w // 2, 1), (w // 2, w, 1), (w, w, 1), (w, 2 * w, 2), (2 * w, 2 * w, 1),
                 (2 * w, 2 * w, 2), (2 * w, 2 * w, 1), (2 * w, 2 * w, 2), (2 * w, 2 * w, 1)]
        for cin, cout, stride in chans:
            layers += [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(2 * w, 2)
        self.width = width

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        x = crops - crops.mean((-2, -1), keepdim=True)
        f = self.body(x * 4.0).mean((-2, -1))
        return F.softplus(self.head(f)) * NOISE_UNIT


def grey(x: torch.Tensor) -> torch.Tensor:
    """``[3, H, W]`` -> ``[1, H, W]`` luminance (BT.601, :func:`m3unet.auto.classifier.luminance`)."""
    return luminance(x)[None]


def textured_crops(x: torch.Tensor, max_crops: int = 48, keep: float = 0.5) -> torch.Tensor:
    """Up to ``max_crops`` grey 64 px crops of ``[3, H, W]`` on a grid; the ``keep`` most textured.

    Flat crops (sky, walls) say nothing about a blur, so the estimate uses those with the most
    gradient energy. Images under 64 px are padded by reflection.
    """
    g = grey(x.float())
    h, w = g.shape[-2:]
    if h < CROP or w < CROP:
        ph, pw = max(0, CROP - h), max(0, CROP - w)
        g = F.pad(g[None], (0, pw, 0, ph), mode="replicate")[0]
        h, w = g.shape[-2:]
    n = max(1, int(math.sqrt(max_crops)))
    ys = np.linspace(0, h - CROP, min(n, max(1, (h - CROP) // 16 + 1))).astype(int)
    xs = np.linspace(0, w - CROP, min(n, max(1, (w - CROP) // 16 + 1))).astype(int)
    crops = torch.stack([g[:, y:y + CROP, x_:x_ + CROP] for y in ys for x_ in xs])
    energy = (crops[..., 1:, :] - crops[..., :-1, :]).abs().mean((1, 2, 3)) + \
             (crops[..., :, 1:] - crops[..., :, :-1]).abs().mean((1, 2, 3))
    k = max(1, int(round(len(crops) * keep)))
    return crops[energy.argsort(descending=True)[:k]]


@dataclass
class BlurEstimate:
    sigma: float        # Gaussian blur sigma (px)
    noise: float        # noise sigma (1/255)
    blocky: float = 1.0  # JPEG blockiness (:func:`blockiness`; 1: none)
    scale: float = 1.0   # ``sigma`` is this times the estimate (policy ``resampled_sigma_scale``)

    def describe(self) -> str:
        return f"blur sigma {self.sigma:.2f} px, noise {self.noise:.1f}/255" + (
            f", JPEG blockiness {self.blocky:.2f}" if self.blocky >= BLOCKY else "") + (
            f" ({self.scale:g} x the estimate: it reads as down-sampled)" if self.scale != 1.0 else "")


BLOCKY = 1.2  # from this blockiness on the deconvolution is skipped: it would amplify the JPEG blocks


def blockiness(x: torch.Tensor) -> float:
    """JPEG blockiness of ``[3, H, W]``: mean luminance step across the columns and rows of an 8 px
    grid relative to the mean step anywhere, at the grid phase where it is largest (a crop of a
    JPEG need not start on its grid). About 1.0 without blocks; measured on the validation photos at
    64-1024 px: Gaussian blur (sigma 2-3 px) at most 1.17, JPEG q15 at least 1.25, q50 1.07-2.2.
    Only directions of at least 64 px count; 1.0 if none does."""
    g = grey(x.float())[0]
    steps = [(g[:, 1:] - g[:, :-1]).abs().mean(0), (g[1:, :] - g[:-1, :]).abs().mean(1)]
    # A direction counts from 64 px (8 blocks) on: over fewer rows (a line of text) the image's own
    # structure (baselines, stems) repeats too little to average out.
    ratios = [max(float(d[p::8].mean()) for p in range(8)) / (float(d.mean()) + 1e-6) for d in steps if len(d) >= 63]
    return float(np.mean(ratios)) if ratios else 1.0


@torch.no_grad()
def estimate(estimator: BlurEstimator, x: torch.Tensor) -> BlurEstimate:
    """The estimator's readings over the textured crops of ``[3, H, W]`` in [0, 1]: the median of
    the blur sigmas (the mean of the two middle ones for an even count), the lower median of the
    noise levels."""
    crops = textured_crops(x)
    p = next(estimator.parameters())
    out = estimator.eval()(crops.to(p.device, p.dtype)).float().cpu()
    return BlurEstimate(float(out[:, 0].quantile(0.5)), float(out[:, 1].median()), blockiness(x))


def wiener_deconvolve(y: torch.Tensor, sigma: float, balance: float, tile: int = 512) -> torch.Tensor:
    """Regularised (Wiener / constrained least-squares) deconvolution of ``[C, H, W]`` by a Gaussian
    of ``sigma`` px, in closed form with the FFT: ``X = K* Y / (|K|^2 + balance |D|^2)``.

    ``D`` is the image gradient, so the penalty is on roughness and the mean colour is kept exactly
    (a constant noise-to-signal term would darken the image). Each piece is mirrored to twice its
    size first, so the FFT's periodic borders do not ring. ``balance``: larger is smoother, safer.
    Images over ``tile`` px run in tiles with a margin of max(64, 16 sigma) px, where the filter's
    response has died out: the result matches the whole-image one (measured: over 130 dB PSNR),
    and memory stays flat (a 4096 px image whole took 9 GB).
    """
    _, h, w = y.shape
    if max(h, w) <= tile:
        return _deconvolve_whole(y, sigma, balance)
    margin = max(64, int(math.ceil(16 * sigma)))
    out = torch.empty_like(y)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            a, b = max(0, y0 - margin), min(h, y0 + tile + margin)
            c, d = max(0, x0 - margin), min(w, x0 + tile + margin)
            part = _deconvolve_whole(y[:, a:b, c:d], sigma, balance)
            th, tw = min(tile, h - y0), min(tile, w - x0)
            out[:, y0:y0 + th, x0:x0 + tw] = part[:, y0 - a:y0 - a + th, x0 - c:x0 - c + tw]
    return out


def _deconvolve_whole(y: torch.Tensor, sigma: float, balance: float) -> torch.Tensor:
    _, h, w = y.shape
    ext = torch.cat([y, y.flip(-1)], -1)
    ext = torch.cat([ext, ext.flip(-2)], -2).double()
    hh, ww = ext.shape[-2:]
    fy = torch.fft.fftfreq(hh, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(ww, dtype=torch.float64)[None, :]
    k = torch.exp(-2 * math.pi ** 2 * sigma ** 2 * (fx ** 2 + fy ** 2))
    d2 = (2 - 2 * torch.cos(2 * math.pi * fx)) + (2 - 2 * torch.cos(2 * math.pi * fy))
    out = torch.fft.irfft2(torch.fft.rfft2(ext) * (k / (k * k + balance * d2)), s=(hh, ww))
    return out[:, :h, :w].to(y.dtype)


def balance_for(noise: float) -> float:
    """Wiener balance for a noise level (1/255). Measured on the 9 validation photos with the true
    kernel and a clean-up pass (``out`` of ``eval --deblur``): 0.003 is best at 2/255 for sigma 1, 2
    and 3 px; at 5/255 about 0.03, at 10/255 about 0.1."""
    return float(min(0.1, max(0.003, 0.003 * (noise / 2.0) ** 2)))


MAX_NOISE = 12.0  # above this noise (1/255) deconvolution hurts even at the largest balance: skip it
SHRINK = 1.0  # deconvolve by this times the estimate (measured with `eval --deblur`: 1.0 28.18 dB, 0.95 28.15, 0.9 28.05)
MIN_SIGMA = 0.7  # below this the deconvolution is skipped (the clean-up pass alone runs)
CLEANUP_TEXT = "remove the light noise"


class KernelDeblur:
    """Estimate the Gaussian blur, Wiener-deconvolve it, clean up with M3UNet.

    In the model pool it is not a candidate of ordinary steps (``tasks`` is empty: the classifier,
    which judges those, reads deconvolved images poorly); the automatic restore runs it as its own
    first step when the classifier and the estimator agree (the policy's defocus gate),
    and a plan may name it (``"model": "kernel-deblur"``)."""

    scale = 1
    tasks: tuple[str, ...] = ()

    def __init__(self, estimator: BlurEstimator, restorer, name: str = "kernel-deblur"):
        self.estimator = estimator
        self.restorer = restorer
        self.name = name
        self.last: BlurEstimate | None = None
        self.estimates: list[BlurEstimate] = []

    def describe(self) -> str:
        return (f"{self.name} (estimated Gaussian kernel, Wiener deconvolution, then an M3UNet clean-up pass; "
                "the automatic restore's defocus step)")

    def reading(self, x: torch.Tensor, sigma: float | None = None, noise: float | None = None) -> BlurEstimate:
        """The estimator's reading of ``[3, H, W]``, with ``sigma`` / ``noise`` replacing it where given."""
        est = estimate(self.estimator, x) if sigma is None or noise is None else BlurEstimate(0.0, 0.0)
        if sigma is not None:  # a blur given by hand is deconvolved whatever the blocks
            return BlurEstimate(float(sigma), est.noise if noise is None else float(noise))
        return BlurEstimate(est.sigma, est.noise if noise is None else float(noise), est.blocky)

    @staticmethod
    def would_deconvolve(est: BlurEstimate) -> bool:
        """False for slight blur (under MIN_SIGMA), strong noise (over MAX_NOISE) or JPEG blocks
        (BLOCKY and more): the clean-up pass only."""
        return est.sigma >= MIN_SIGMA and est.noise <= MAX_NOISE and est.blocky < BLOCKY


    @classmethod
    def deconvolve(cls, x: torch.Tensor, est: BlurEstimate) -> torch.Tensor:
        """The deconvolution stage alone (skipped for slight blur or strong noise)."""
        if not cls.would_deconvolve(est):
            return x
        return wiener_deconvolve(x.float(), est.sigma * SHRINK, balance_for(est.noise)).clamp(0, 1).to(x.dtype)

    def run(self, x: torch.Tensor, step=None, seed: int = 0, steps: int = 1, tile: int = 512,
            check: Callable[..., None] | None = None) -> torch.Tensor:
        """``[3, H, W]`` float in [0, 1] -> the deblurred image, same size (the pool members'
        interface; the blur is estimated, the step's text and sampler steps do not apply)."""
        return self.restore(x.permute(1, 2, 0)[None], seed=seed, tile=tile,
                            progress=progress_for(check))[0].permute(2, 0, 1)

    def deblur(self, x: torch.Tensor, est: BlurEstimate, seed: int = 0, tile: int = 512,
               check: Callable[..., None] | None = None) -> torch.Tensor:
        """``[3, H, W]`` -> deblurred with the blur and noise of ``est`` (the gate's reading)."""
        return self.restore(x.permute(1, 2, 0)[None], seed=seed, tile=tile, progress=progress_for(check),
                            sigma=est.sigma, noise=est.noise)[0].permute(2, 0, 1)

    def restore(self, image: torch.Tensor, text: str = "", steps: int = 1, seed: int = 0, tile: int = 512,
                progress=None, sigma: float | None = None, noise: float | None = None) -> torch.Tensor:
        """Restorer-like: IMAGE ``[B, H, W, C]`` (grey/RGB/RGBA, float or uint8) -> IMAGE of the same
        shape and dtype; alpha passes through. ``text`` and ``steps`` are not used (the clean-up pass
        has its own); ``sigma`` (px) and ``noise`` (1/255) replace the estimator's reading when given.
        The readings are kept in :attr:`estimates`, one per image."""
        def read(i: int, rgb: torch.Tensor) -> BlurEstimate:
            self.last = self.reading(rgb, sigma, noise)
            return self.last

        out, self.estimates = deconvolve_and_clean(image, self.restorer, read, self.deconvolve, seed, tile, progress)
        return out


def progress_for(check: Callable[..., None] | None):
    """A Restorer progress callback that reports the fraction done to a pool member's ``check``
    (0 before the clean-up pass starts)."""
    return (lambda p: check(p.done / p.total) if p is not None else check(0.0)) if check else None


def deconvolve_and_clean(image: torch.Tensor, restorer, read: Callable[[int, torch.Tensor], object],
                         deconvolve: Callable[[torch.Tensor, object], torch.Tensor], seed: int, tile: int,
                         progress=None) -> tuple[torch.Tensor, list]:
    """Deconvolve each image of an IMAGE batch ``[B, H, W, C]`` (grey/RGB/RGBA, float or uint8) with
    the kernel ``read(i, rgb)`` reports, then one M3UNet clean-up pass (:data:`CLEANUP_TEXT`) on
    ``restorer``; returns the batch in the input's shape and dtype (alpha passes through) and the
    readings. ``progress(None)`` follows each deconvolution, then the pass reports per tile."""
    from ..core.image import check_image, to_rgb_float
    image = check_image(image)
    outs, readings = [], []
    for i, x in enumerate(image):
        rgb = to_rgb_float(x.cpu())
        est = read(i, rgb)
        readings.append(est)
        d = deconvolve(rgb, est).permute(1, 2, 0)
        del rgb  # memory: at 4096 px each whole-image copy is 200 MB
        d = like_input(d, x.cpu())
        if progress:
            progress(None)
        outs.append(restorer.restore(d[None].to(x.device), text=CLEANUP_TEXT, steps=1, seed=seed,
                                     tile=tile, progress=progress)[0])
    return torch.stack(outs), readings


def shipped_kernel_deblur(restorer) -> list[KernelDeblur]:
    """``[KernelDeblur]`` with the shipped estimator and ``restorer`` for the clean-up pass, or ``[]``
    when there is no restorer or no estimator file (the pool then deblurs with M3UNet alone)."""
    if restorer is None:
        return []
    est = load_shipped_estimator()
    return [KernelDeblur(est, restorer)] if est is not None else []


# --- weights -----------------------------------------------------------------------------------

def is_estimator_file(path) -> bool:
    """True if ``path`` is a readable safetensors file with blur estimator metadata."""
    from ..core.weights import read_metadata
    try:
        return "m3unet_blur_estimator" in read_metadata(Path(path))
    except Exception:  # noqa: BLE001 - any unreadable file is simply not an estimator
        return False


def load_estimator(path=None) -> BlurEstimator:
    """Load a blur estimator (safetensors only), with clear errors for missing or wrong files."""
    from ..core.weights import read_metadata
    path = Path(path) if path else ESTIMATOR_FILE
    meta = read_metadata(path)
    if "m3unet_blur_estimator" not in meta:
        raise BlurEstimatorError(f"{path} is not a blur estimator file (no 'm3unet_blur_estimator' metadata); "
                                 f"train one with `python -m m3unet train-blur-estimator`")
    cfg = json.loads(meta["m3unet_blur_estimator"])
    from safetensors.torch import load_file
    model = BlurEstimator(int(cfg.get("width", 32)))
    try:
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as e:
        raise BlurEstimatorError(f"{path}: the tensors do not match a blur estimator of width "
                                 f"{cfg.get('width')}: {e}") from None
    return model.eval()


_shipped: FileCache[BlurEstimator] = FileCache()


def shipped_estimator() -> BlurEstimator:
    """The shipped estimator, loaded once per process (again if its file changes); a clear error
    (:class:`m3unet.core.weights.CheckpointError`) names a missing or corrupt file."""
    return _shipped.get(ESTIMATOR_FILE, lambda: load_estimator(ESTIMATOR_FILE))


def load_shipped_estimator() -> BlurEstimator | None:
    """The shipped estimator (cached, :func:`shipped_estimator`), or None if its file is absent."""
    return shipped_estimator() if ESTIMATOR_FILE.exists() else None
