"""PixelControl: pixel-level control from the low-quality image, with a per-pixel strength.

The paper injects pixel-level control information into the denoiser "through multi-level
attention mechanisms". Here the control image's refine features (one per U-Net level) enter the
U-Net at every level through a pixel attention gate (the gate is computed from the U-Net's own
features and the control features, and weighs which control channels to admit at each pixel; a
zero-initialised projection makes the injection start as identity, as in ControlNet).

The strength (a scalar or a per-pixel map in [0, 2]) scales, pixel by pixel, the change the model
makes to its input at every sampler step (``x0 = y + s * (x0_model - y)``): 0 keeps the input
exactly, 1 is the trained restoration, values above 1 exaggerate it.
A MASK lets a user restore one region strongly and leave another untouched.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .refine import LayerNorm2d

MAX_STRENGTH = 2.0


class ControlAttention(nn.Module):
    """Inject control features ``c`` into U-Net features ``h``: ``h + P(sigmoid(G[h, c]) * V(c))``."""

    def __init__(self, c_unet: int, c_ctrl: int):
        super().__init__()
        self.norm_h = LayerNorm2d(c_unet)
        self.norm_c = LayerNorm2d(c_ctrl)
        self.gate = nn.Conv2d(c_unet + c_ctrl, c_unet, 1)
        self.value = nn.Conv2d(c_ctrl, c_unet, 1)
        self.proj = nn.Conv2d(c_unet, c_unet, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        hn, cn = self.norm_h(h), self.norm_c(c)
        a = torch.sigmoid(self.gate(torch.cat([hn, cn], 1)))
        return h + self.proj(a * self.value(cn))


@dataclass
class Control:
    """A pixel control: the guidance image (None: the image being restored) and a strength map.

    ``strength`` is a float or a tensor ``[B, H, W]`` (a MASK-like map); values in [0, 2].
    """
    image: torch.Tensor | None = None  # [B, H, W, 3] (ComfyUI IMAGE layout), optional
    strength: float | torch.Tensor = 1.0

    def strength_map(self, batch: int, height: int, width: int) -> torch.Tensor:
        """The strength as ``[B, 1, H, W]`` float32 (resized if it came at another size); read-only:
        a scalar strength is a broadcast view, so no full-size map is allocated on big images."""
        s = self.strength
        if not torch.is_tensor(s):
            return torch.full((1, 1, 1, 1), float(s)).expand(batch, 1, height, width)
        s = s.float()
        if s.ndim == 2:
            s = s[None]
        if s.ndim != 3:
            raise ValueError(f"control strength map must be [B, H, W] (a MASK); got shape {tuple(s.shape)}")
        if s.shape[-2:] != (height, width):
            s = F.interpolate(s[:, None], size=(height, width), mode="bilinear", align_corners=False)[:, 0]
        if s.shape[0] not in (1, batch):
            raise ValueError(f"control strength map has batch {s.shape[0]} but the image batch is {batch}")
        return s.expand(batch, height, width)[:, None].clamp(0, MAX_STRENGTH)


def make_control(strength: float = 1.0, mask: torch.Tensor | None = None, image: torch.Tensor | None = None,
                 outside: float = 0.0) -> Control:
    """Build a :class:`Control`: ``strength`` inside ``mask`` (or everywhere), ``outside`` elsewhere."""
    if not 0.0 <= float(strength) <= MAX_STRENGTH:
        raise ValueError(f"strength must be between 0 and {MAX_STRENGTH}; got {strength}")
    if mask is None:
        return Control(image=image, strength=float(strength))
    if not torch.is_tensor(mask) or mask.ndim not in (2, 3):
        raise ValueError(f"mask must be a MASK tensor [B, H, W]; got {getattr(mask, 'shape', type(mask))}")
    if torch.isnan(mask).any():
        raise ValueError("mask contains NaN values")
    m = mask.float().clamp(0, 1)
    if m.ndim == 2:
        m = m[None]
    if m.max() == 0:
        # ComfyUI's LoadImage outputs an all-zero 64x64 MASK for images without alpha; honouring
        # it would silently switch restoration off everywhere, so an empty mask means "no mask".
        warnings.warn("PixelControl: the mask is empty (all zero), so it is ignored and the strength "
                      "applies everywhere; paint the region to restore in the mask to use it.")
        return Control(image=image, strength=float(strength))
    return Control(image=image, strength=outside + (float(strength) - outside) * m)
