"""Image helpers shared by every layer: checking an IMAGE, converting to RGB float and back, luminance.

An IMAGE is ComfyUI's layout, ``[B, H, W, C]`` with C = 1 (grey), 3 (RGB) or 4 (RGBA), float in
[0, 1] or uint8. Models work on RGB float ``[3, H, W]``; :func:`to_rgb_float` goes there and
:func:`like_input` comes back to the input's channels and dtype (alpha passed through untouched).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

MIN_SIDE = 16
MAX_SIDE = 16384
# Rec. 601 luma weights (ITU-R BT.601), used for grey output and every luminance statistic.
LUMA = (0.299, 0.587, 0.114)


class InputError(ValueError):
    """Bad input to the restorer; the message names the input and the fix."""


def check_image(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """Validate an IMAGE-like tensor and return it as ``[B, H, W, C]``."""
    if not torch.is_tensor(image):
        raise InputError(f"{name} must be a tensor [B, H, W, C]; got {type(image).__name__}")
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4:
        raise InputError(f"{name} must be [B, H, W, C] (ComfyUI IMAGE); got shape {tuple(image.shape)}")
    b, h, w, c = image.shape
    if c not in (1, 3, 4):
        raise InputError(f"{name} has {c} channels; expected 1 (grey), 3 (RGB) or 4 (RGBA). "
                         "If it is [B, C, H, W], permute it to [B, H, W, C].")
    if b == 0:
        raise InputError(f"{name} is an empty batch")
    if min(h, w) < MIN_SIDE:
        raise InputError(f"{name} is {w}x{h} px; M3UNet needs at least {MIN_SIDE}x{MIN_SIDE} px. "
                         "Upscale it first (e.g. ImageScale) or use a larger crop.")
    if max(h, w) > MAX_SIDE:
        raise InputError(f"{name} is {w}x{h} px; the largest side supported is {MAX_SIDE} px. Downscale it first.")
    if image.is_floating_point():
        if not torch.isfinite(image).all():
            raise InputError(f"{name} contains NaN or infinite values; check the node that produced it.")
    elif image.dtype != torch.uint8:
        raise InputError(f"{name} has dtype {image.dtype}; expected float (0-1) or uint8 (0-255)")
    return image


def to_rgb_float(x: torch.Tensor) -> torch.Tensor:
    """One image ``[H, W, C]`` of any supported dtype -> ``[3, H, W]`` float32 in [0, 1]."""
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    x = x[..., :3] if x.shape[-1] >= 3 else x[..., :1].expand(*x.shape[:-1], 3)
    return x.clamp(0, 1).permute(2, 0, 1)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """Rec. 601 luma of RGB images with channels at dim -3 (``[..., 3, H, W]`` -> ``[..., H, W]``)."""
    return LUMA[0] * x[..., 0, :, :] + LUMA[1] * x[..., 1, :, :] + LUMA[2] * x[..., 2, :, :]


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic (antialiased when shrinking) resize of ``[C, H, W]`` to ``size`` = (H', W'), clamped."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x[None], size=size, mode="bicubic", antialias=True, align_corners=False)[0].clamp(0, 1)


def like_input(rgb: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """An RGB float result ``[H', W', 3]`` -> the layout of ``original`` ``[H, W, C]``: its channels
    (grey by Rec. 601 luma; RGBA with the original alpha, resized if the size changed) and dtype."""
    c = original.shape[-1]
    y = rgb.clamp(0, 1)  # a new tensor: the conversions below work in place on it (flat memory)
    if c == 1:
        y = (y * torch.tensor(LUMA, dtype=y.dtype, device=y.device)).sum(-1, keepdim=True)
    elif c == 4:
        a = original[..., 3:].float() / (255 if original.dtype == torch.uint8 else 1)
        if a.shape[:2] != y.shape[:2]:
            a = resize(a.permute(2, 0, 1), tuple(y.shape[:2])).permute(1, 2, 0)
        y = torch.cat([y, a.to(y.device, y.dtype)], -1)
    if original.dtype == torch.uint8:
        return y.mul_(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
    return y.to(original.dtype)
