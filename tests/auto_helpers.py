"""Helpers for the automatic-restore tests: a tiny real spandrel model and a noise-reading classifier.

Spandrel model: RealESRGAN Compact (SRVGGNetCompact), built in the test (no download).

:func:`compact_blur_state_dict` hand-sets the weights of a 3-feature Compact network so that it
computes a 3x3 binomial blur (a weak but genuine denoiser): the first convolution outputs
``blur(x) - x``, the PReLU is the identity (slope 1), the last convolution copies its input into
every pixel-shuffle sub-pixel, and the architecture adds the nearest-upsampled input. At scale 1
the output is ``blur(x)``; at scale 2 it is ``blur(x)`` nearest-upsampled. spandrel detects the
state dict as "RealESRGAN Compact" from its keys alone.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import save_file


def compact_blur_state_dict(scale: int = 1) -> dict[str, torch.Tensor]:
    k1 = torch.tensor([1.0, 2.0, 1.0])
    blur = (k1[:, None] * k1[None, :]) / 16
    delta = torch.zeros(3, 3)
    delta[1, 1] = 1
    first = torch.zeros(3, 3, 3, 3)
    for c in range(3):
        first[c, c] = blur - delta
    last = torch.zeros(3 * scale * scale, 3, 3, 3)
    for c in range(3):
        for sub in range(scale * scale):  # PixelShuffle reads channel c * s^2 + sub
            last[c * scale * scale + sub, c] = delta
    return {"body.0.weight": first, "body.0.bias": torch.zeros(3),
            "body.1.weight": torch.ones(3),  # PReLU slope 1: identity
            "body.2.weight": last, "body.2.bias": torch.zeros(3 * scale * scale)}


def save_compact_blur(path: Path, scale: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(compact_blur_state_dict(scale), str(path))
    return path


def load_descriptor(path: Path):
    """Load a safetensors file through spandrel's ModelLoader (as ComfyUI's UpscaleModelLoader does)."""
    from safetensors.torch import load_file
    from spandrel import ImageModelDescriptor, ModelLoader
    desc = ModelLoader().load_from_state_dict(load_file(str(path))).eval()
    assert isinstance(desc, ImageModelDescriptor)
    return desc


def noise_sigma(image: torch.Tensor) -> torch.Tensor:
    """Immerkaer's fast noise estimate (1996) per image of an IMAGE batch ``[B, H, W, C]``, in 0-1 units."""
    x = image[..., :3].float().mean(-1)[:, None]
    lap = torch.tensor([[1.0, -2, 1], [-2, 4, -2], [1, -2, 1]])[None, None]
    r = torch.nn.functional.conv2d(x, lap)
    return math.sqrt(math.pi / 2) * r.abs().mean((1, 2, 3)) / 6


class NoiseReader:
    """A classifier stand-in that really measures one thing: noise (everything else reads clean).

    Returns :class:`m3unet.auto.classifier.Finding` s like the DegradationClassifier; ``calls`` counts
    the images it read.
    """

    def __init__(self, threshold: float = 3 / 255):
        self.threshold = threshold
        self.calls = 0

    def __call__(self, image: torch.Tensor) -> list:
        from m3unet.auto.classifier import LABELS, Finding
        out = []
        for s in noise_sigma(image).tolist():
            self.calls += 1
            p = 1 / (1 + math.exp(-(s - self.threshold) * 255))
            probs = {k: 0.0 for k in LABELS} | {"noise": round(p, 4)}
            sev = {k: 0.0 for k in LABELS} | {"noise": round(min(1.0, max(0.0, (s * 255 - 3) / 47)), 4)}
            out.append(Finding(probs, sev))
        return out


def smooth_photo(h: int = 96, w: int = 128) -> torch.Tensor:
    """A smooth synthetic RGB image ``[1, H, W, 3]`` (so a blur removes noise without losing detail)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([0.2 + 0.6 * yy, 0.2 + 0.6 * xx, 0.5 + 0.3 * torch.sin(6 * xx + 3 * yy)], -1)[None]


def add_noise(image: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (image + sigma * torch.randn(image.shape, generator=g)).clamp(0, 1)


class PoolModelRunner:
    """The library's pool wrapper around a spandrel file, on uint8 ``[H, W, 3]`` arrays (reference outputs)."""

    def __init__(self, path: Path):
        from m3unet.auto.pool import PoolModel
        self.model = PoolModel(load_descriptor(path), "noise")

    def __call__(self, arr):
        import numpy as np
        x = torch.from_numpy(np.asarray(arr)).float().permute(2, 0, 1) / 255
        y = self.model(x).permute(1, 2, 0).numpy()
        return (y * 255).astype(np.uint8)  # SaveImage truncates
