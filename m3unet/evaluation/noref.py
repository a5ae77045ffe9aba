"""No-reference image quality: NIQE and BRISQUE (lower is better for both).

NIQE (Mittal, Soundararajan & Bovik, "Making a 'Completely Blind' Image Quality Analyzer",
IEEE SPL 2013): the image's MSCN coefficients are split into 96x96 blocks; each block gives 18
features (an AGGD fit of the coefficients and of their four neighbour products) at two scales;
a multivariate Gaussian fitted to those features is compared with one fitted to pristine natural
images. The pristine model (``assets/niqe_pris_params.npz``, 12 KB) is the official MATLAB
release's, as redistributed in BasicSR 1.4.2 (Apache-2.0, ``basicsr/metrics/niqe_pris_params.npz``);
this implementation is our own, following BasicSR's MATLAB-compatible conventions (Y channel of
MATLAB's YCbCr, rounded; 96 px blocks without overlap; MATLAB's antialiased bicubic ``imresize``
for the second scale), so scores match BasicSR's ``calculate_niqe`` (to 4 decimals on the scikit-image photos).

BRISQUE (Mittal, Moorthy & Bovik, IEEE TIP 2012) uses the SVM regression model that ships in the
PyPI package ``brisque`` 0.2.0, with a fix for NumPy 2.x (its feature scaling converts 1-element
arrays with ``float``, which NumPy >= 2.4 refuses).
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import convolve
from scipy.special import gamma

NIQE_PARAMS = Path(__file__).resolve().parent / "assets" / "niqe_pris_params.npz"
BLOCK = 96


def _to_uint8_rgb(image) -> np.ndarray:
    """Accept ``[3, H, W]`` float tensors in [0, 1] or ``[H, W, 3]`` uint8/float arrays."""
    if torch.is_tensor(image):
        image = image.detach().float().clamp(0, 1)
        image = image.permute(1, 2, 0).numpy() if image.ndim == 3 and image.shape[0] in (1, 3) else image.numpy()
        image = image * 255
    a = np.asarray(image)
    if a.dtype != np.uint8:
        if a.max() <= 1.0 + 1e-6 and a.dtype.kind == "f":
            a = a * 255
        a = np.clip(np.round(a), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, -1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise ValueError(f"image must be [H, W, 3] or a [3, H, W] tensor; got shape {a.shape}")
    return a[..., :3]


def y_channel(rgb_uint8: np.ndarray) -> np.ndarray:
    """Luma of MATLAB's ``rgb2ycbcr`` (ITU-R BT.601, 16..235) in [0, 255], rounded."""
    x = rgb_uint8.astype(np.float64) / 255
    y = 16 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]
    return np.round(y).astype(np.float32)  # float32 as in BasicSR (scores then agree to ~1e-2)


@lru_cache(maxsize=1)
def _pristine() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = np.load(NIQE_PARAMS)
    return p["mu_pris_param"].astype(np.float64).ravel(), p["cov_pris_param"].astype(np.float64), \
        p["gaussian_window"].astype(np.float64)


_GAM = np.arange(0.2, 10.001, 0.001)
_R_GAM = gamma(2 / _GAM) ** 2 / (gamma(1 / _GAM) * gamma(3 / _GAM))


def aggd_fit(x: np.ndarray) -> tuple[float, float, float]:
    """Asymmetric generalised Gaussian fit by moment matching: ``(alpha, beta_left, beta_right)``."""
    x = x.ravel()
    left = np.sqrt(np.mean(x[x < 0] ** 2)) if np.any(x < 0) else np.nan
    right = np.sqrt(np.mean(x[x > 0] ** 2)) if np.any(x > 0) else np.nan
    g = left / right
    r = np.mean(np.abs(x)) ** 2 / np.mean(x ** 2)
    rn = r * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2
    alpha = float(_GAM[np.argmin((_R_GAM - rn) ** 2)])
    c = math.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, float(left * c), float(right * c)


def _block_features(block: np.ndarray) -> list[float]:
    """The 18 NIQE features of one block of MSCN coefficients."""
    a, bl, br = aggd_fit(block)
    feats = [a, (bl + br) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a, bl, br = aggd_fit(block * np.roll(block, shift, axis=(0, 1)))
        feats += [a, (br - bl) * gamma(2 / a) / gamma(1 / a), bl, br]
    return feats


def _cubic(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    return ((1.5 * a ** 3 - 2.5 * a ** 2 + 1) * (a <= 1)
            + (-0.5 * a ** 3 + 2.5 * a ** 2 - 4 * a + 2) * ((a > 1) & (a <= 2)))


def _resize_axis(img: np.ndarray, scale: float, axis: int) -> np.ndarray:
    """MATLAB ``imresize`` (bicubic, antialiased when shrinking, symmetric borders) along one axis."""
    n_in = img.shape[axis]
    n_out = math.ceil(n_in * scale)
    width = 4.0 / scale if scale < 1 else 4.0
    u = np.arange(1, n_out + 1) / scale + 0.5 * (1 - 1 / scale)
    idx = np.floor(u - width / 2)[:, None] + np.arange(math.ceil(width) + 2)[None, :]
    wts = scale * _cubic((u[:, None] - idx) * scale) if scale < 1 else _cubic(u[:, None] - idx)
    wts = (wts / wts.sum(1, keepdims=True)).astype(img.dtype)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in - 1, -1, -1)])
    idx = mirror[np.mod(idx - 1, 2 * n_in).astype(int)]
    moved = np.moveaxis(img, axis, 0)
    out = np.einsum("op,op...->o...", wts, moved[idx])
    return np.moveaxis(out, 0, axis)


def _half(img: np.ndarray) -> np.ndarray:
    """Half-size image as MATLAB's ``imresize(img, 0.5)`` computes it (BasicSR's NIQE convention)."""
    return _resize_axis(_resize_axis(img, 0.5, 0), 0.5, 1)


def niqe(image) -> float:
    """NIQE score of an RGB image (lower is more natural). Needs at least 96x96 px."""
    y = y_channel(_to_uint8_rgb(image))
    h, w = y.shape
    nh, nw = h // BLOCK, w // BLOCK
    if nh == 0 or nw == 0:
        raise ValueError(f"NIQE needs an image of at least {BLOCK}x{BLOCK} px; got {w}x{h}")
    img = y[:nh * BLOCK, :nw * BLOCK]
    mu_p, cov_p, window = _pristine()
    per_scale = []
    for scale in (1, 2):
        mu = convolve(img, window, mode="nearest")
        sigma = np.sqrt(np.abs(convolve(img * img, window, mode="nearest") - mu * mu))
        mscn = (img - mu) / (sigma + 1)
        b = BLOCK // scale
        per_scale.append(np.array([_block_features(mscn[i * b:(i + 1) * b, j * b:(j + 1) * b])
                                   for j in range(nw) for i in range(nh)]))
        if scale == 1:
            img = _half(img)
    feats = np.concatenate(per_scale, axis=1)
    mu_d = np.nanmean(feats, axis=0)
    clean = feats[~np.isnan(feats).any(axis=1)]
    cov_d = np.cov(clean, rowvar=False) if len(clean) > 1 else np.zeros_like(cov_p)
    d = mu_p - mu_d
    return float(np.sqrt(d @ np.linalg.pinv((cov_p + cov_d) / 2) @ d))


@lru_cache(maxsize=1)
def _brisque_model():
    try:
        from brisque import BRISQUE
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError("BRISQUE needs the dev requirements: pip install -r requirements-dev.txt") from e

    class _Brisque(BRISQUE):
        def scale_features(self, features):  # NumPy 2.x: features are 0-d or 1-element arrays
            flat = lambda v: np.array([np.asarray(f, dtype=np.float64).ravel()[0] for f in v])  # noqa: E731
            lo, hi = flat(self.scale_params["min_"]), flat(self.scale_params["max_"])
            return -1 + 2.0 / (hi - lo) * (flat(features) - lo)

    return _Brisque(url=False)


def brisque(image) -> float:
    """BRISQUE score of an RGB image (lower is better; roughly 0-100 on natural images)."""
    a = _to_uint8_rgb(image)
    if min(a.shape[:2]) < 16:
        raise ValueError(f"BRISQUE needs an image of at least 16x16 px; got {a.shape[1]}x{a.shape[0]}")
    return float(_brisque_model().score(a))
