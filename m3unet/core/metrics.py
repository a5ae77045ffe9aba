"""Full-reference image quality: PSNR and SSIM (Wang et al. 2004, Gaussian window 11, sigma 1.5)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> float:
    """PSNR in dB between two images of the same shape (values in [0, data_range])."""
    mse = F.mse_loss(x.float(), ref.float()).item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(data_range ** 2 / mse)).item()


def ssim(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> float:
    """Mean SSIM of [C, H, W] (or [H, W]) images, computed per channel on a Gaussian window."""
    x = x.float()[None] if x.ndim == 3 else x.float()[None, None]
    y = ref.float()[None] if ref.ndim == 3 else ref.float()[None, None]
    c = x.shape[1]
    g = torch.exp(-(torch.arange(11) - 5.0) ** 2 / (2 * 1.5 ** 2))
    g = g / g.sum()
    win = (g[:, None] * g[None, :]).expand(c, 1, 11, 11)
    filt = lambda t: F.conv2d(t, win, groups=c)  # noqa: E731
    mx, my = filt(x), filt(y)
    sxx, syy, sxy = filt(x * x) - mx ** 2, filt(y * y) - my ** 2, filt(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return s.mean().item()
