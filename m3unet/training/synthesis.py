"""Degradation synthesis: the corruptions M3UNet is trained and evaluated on.

Each degradation has a ``severity`` in [0, 1] that maps to physical parameters (noise sigma, blur
width, JPEG quality, ...), and a short text that describes it (:mod:`m3unet.caption.mllm`). Images are
float tensors ``[3, H, W]`` in [0, 1]; everything is seeded by a ``torch.Generator``.

Models follow the usual image formation ``B = K * I + N`` (paper eq. 1) extended with
down-sampling, JPEG, low light (darkening + gamma + noise) and haze (atmospheric scattering).
Mixtures are applied in the physical order of a camera pipeline: blur -> resolution -> haze ->
low light -> noise -> JPEG.
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..core.degradations import KINDS, LABEL, LEVELS, ORDER, Degradation, level  # noqa: F401 (re-exported)

def params_for(kind: str, severity: float, gen: torch.Generator | None = None) -> dict:
    """Physical parameters of ``kind`` at ``severity`` (random parts drawn from ``gen``)."""
    s = float(min(max(severity, 0.0), 1.0))
    u = lambda: float(torch.rand((), generator=gen))  # noqa: E731
    if kind == "noise":
        return {"sigma": (3 + 47 * s) / 255}                    # 3..50 /255
    if kind == "poisson":
        return {"peak": 10 ** (2.6 - 1.6 * s)}                  # photons at white: 400..10
    if kind == "blur":
        return {"sigma": 0.6 + 3.0 * s}                         # px
    if kind == "motion":
        return {"length": 5 + 20 * s, "angle": 180 * u(), "curve": 2 * u() - 1, "seed": int(1e9 * u())}
    if kind == "lowres":
        return {"scale": 1.5 + 2.5 * s}                         # 1.5x..4x
    if kind == "haze":
        return {"density": 0.25 + 0.5 * s, "airlight": 0.75 + 0.2 * u(), "tilt": 2 * u() - 1}
    if kind == "lowlight":
        return {"gain": 0.55 - 0.4 * s, "gamma": 1.0 + 0.6 * s, "sigma": (1 + 6 * s) / 255}
    if kind == "jpeg":
        return {"quality": int(round(70 - 62 * s))}              # 70..8
    raise ValueError(f"unknown degradation kind {kind!r}; expected one of {KINDS}")


def make(kind: str, severity: float, gen: torch.Generator | None = None, **override) -> Degradation:
    """A :class:`Degradation` with parameters from its severity, optionally overridden."""
    p = params_for(kind, severity, gen)
    p.update(override)
    return Degradation(kind, float(severity), p)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-x ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    return k[:, None] * k[None, :]


def motion_kernel(length: float, angle: float, curve: float, seed: int) -> torch.Tensor:
    """A linear or curved motion-blur kernel: a camera path of ``length`` px drawn as a polyline."""
    rng = np.random.default_rng(seed)
    size = int(math.ceil(length)) | 1
    k = np.zeros((size * 4, size * 4), np.float64)  # supersampled canvas
    n = 400
    s = np.linspace(-0.5, 0.5, n) * length
    theta = math.radians(angle)
    bend = curve * length * 0.25 * (1 - (2 * np.linspace(-1, 1, n)) ** 2 / 4)
    jitter = np.cumsum(rng.normal(0, 0.02, n))
    xs = s * math.cos(theta) - (bend + jitter) * math.sin(theta)
    ys = s * math.sin(theta) + (bend + jitter) * math.cos(theta)
    xs -= xs.mean()
    ys -= ys.mean()
    c = size * 2
    for x, y in zip(xs, ys):
        xi, yi = int(round((x * 4 + c))), int(round((y * 4 + c)))
        if 0 <= xi < k.shape[1] and 0 <= yi < k.shape[0]:
            k[yi, xi] += 1
    k = k.reshape(size, 4, size, 4).sum((1, 3))
    k = torch.from_numpy(k / k.sum()).float()
    return k


def convolve(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Per-channel 2-D convolution with reflect padding (same size)."""
    kh, kw = kernel.shape
    pad = (kw // 2, kw - 1 - kw // 2, kh // 2, kh - 1 - kh // 2)
    h, w = x.shape[-2:]
    mode = "reflect" if min(h, w) > max(kh, kw) else "replicate"
    xp = F.pad(x[None], pad, mode=mode)
    weight = kernel.flip(0, 1)[None, None].expand(x.shape[0], 1, kh, kw).to(x)
    return F.conv2d(xp, weight, groups=x.shape[0])[0]


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Round-trip through baseline JPEG (PIL, 4:2:0 chroma) at ``quality``."""
    arr = (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality))
    out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(out).permute(2, 0, 1).contiguous()


def apply_one(x: torch.Tensor, d: Degradation, gen: torch.Generator | None = None) -> torch.Tensor:
    """Apply one degradation to ``x`` ([3, H, W] in [0, 1]); the output keeps the size."""
    p = d.params
    if d.kind == "noise":
        return x + p["sigma"] * torch.randn(x.shape, generator=gen)
    if d.kind == "poisson":  # shot noise, plus read noise of ``sigma`` when given (Poisson-Gaussian)
        peak = p["peak"]
        y = torch.poisson(x.clamp(0, 1) * peak, generator=gen) / peak
        return y + p["sigma"] * torch.randn(x.shape, generator=gen) if p.get("sigma") else y
    if d.kind == "blur":
        return convolve(x, gaussian_kernel(p["sigma"]))
    if d.kind == "motion":
        return convolve(x, motion_kernel(p["length"], p["angle"], p["curve"], p["seed"]))
    if d.kind == "lowres":
        h, w = x.shape[-2:]
        small = (max(1, round(h / p["scale"])), max(1, round(w / p["scale"])))
        mode = p.get("mode", "bicubic")  # the down-sampling filter: bicubic, bilinear or area
        lo = (F.interpolate(x[None], size=small, mode="area") if mode == "area" else
              F.interpolate(x[None], size=small, mode=mode, antialias=True, align_corners=False))
        return F.interpolate(lo, size=(h, w), mode="bicubic", align_corners=False)[0]
    if d.kind == "haze":
        h, w = x.shape[-2:]
        ramp = torch.linspace(-1, 1, h)[:, None] * p["tilt"] * 0.5 + 0.5
        depth = (0.6 + 0.4 * ramp).expand(h, w)
        t = torch.exp(-2.0 * p["density"] * depth)
        return x * t + p["airlight"] * (1 - t)
    if d.kind == "lowlight":
        dark = (x.clamp(0, 1) * p["gain"]) ** p["gamma"]
        return dark + p["sigma"] * torch.randn(x.shape, generator=gen)
    if d.kind == "jpeg":
        return jpeg(x, p["quality"])
    raise ValueError(f"unknown degradation kind {d.kind!r}")


def apply(x: torch.Tensor, degs: list[Degradation], gen: torch.Generator | None = None) -> torch.Tensor:
    """Apply a mixture in camera-pipeline order; returns a [0, 1] image of the same size."""
    for d in sorted(degs, key=lambda d: ORDER[d.kind]):
        x = apply_one(x, d, gen)
    return x.clamp(0, 1)


# Sampling weights for training: the tasks users meet most (noise, blur, JPEG) weigh more.
TRAIN_WEIGHTS = {"noise": 3.0, "poisson": 1.0, "blur": 3.5, "motion": 2.0, "lowres": 1.5,
                 "haze": 0.7, "lowlight": 0.8, "jpeg": 3.0}
EXCLUSIVE = [{"noise", "poisson"}, {"blur", "motion"}]


def sample(gen: torch.Generator, p_clean: float = 0.08, p_mix: float = 0.4,
           weights: dict[str, float] | None = None) -> list[Degradation]:
    """Draw a random degradation set: clean, one kind, or a mixture of two or three kinds.

    ``weights`` (default :data:`TRAIN_WEIGHTS`) gives each kind's relative frequency; a subset
    restricts the draw to those kinds (e.g. a deblurring specialist).
    """
    weights_by_kind = TRAIN_WEIGHTS if weights is None else weights
    unknown = set(weights_by_kind) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown degradation kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    r = float(torch.rand((), generator=gen))
    if r < p_clean:
        return []
    kinds = list(weights_by_kind)
    n = 1 if r < p_clean + (1 - p_clean - p_mix) else int(torch.randint(2, 4, (), generator=gen))
    n = min(n, len(kinds) - sum(1 for ex in EXCLUSIVE if len(ex & set(kinds)) > 1))
    weights = torch.tensor([float(weights_by_kind[k]) for k in kinds])
    chosen: list[str] = []
    while len(chosen) < n:
        k = kinds[int(torch.multinomial(weights, 1, generator=gen))]
        if k in chosen or any(k in ex and c in ex for ex in EXCLUSIVE for c in chosen):
            continue
        chosen.append(k)
    return [make(k, float(torch.rand((), generator=gen)), gen) for k in chosen]


# Fixed evaluation settings (the quality targets in docs/results.md and the eval table).
def eval_settings() -> dict[str, list[Degradation]]:
    """Named degradation settings used by ``python -m m3unet eval`` (deterministic parameters)."""
    g = torch.Generator().manual_seed(0)
    return {
        "noise25": [make("noise", (25 - 3) / 47)],
        "blur2": [make("blur", (2 - 0.6) / 3.0), make("noise", 0.0, sigma=2 / 255)],
        "motion": [make("motion", 0.5, g)],
        "jpeg15": [make("jpeg", (70 - 15) / 62, quality=15)],
        "lowres2x": [make("lowres", 0.2, scale=2.0)],
        "lowlight": [make("lowlight", 0.5)],
        "haze": [make("haze", 0.5, g)],
        "mix": [make("blur", 0.25, sigma=1.5), make("noise", (15 - 3) / 47), make("jpeg", 0.6, quality=30)],
    }
