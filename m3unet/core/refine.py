"""RefineEncoder: the image encoder with the paper's Refine Layer (parallel dilated convolutions).

The M3UNet paper (Sec. 3.4, Table 3) improves feature acquisition with a "refine layer" of
dilated convolutions and compares dilation rates D=3, 4, 5 and D=[3,4,5] (D=3 best). We read a
refine layer as parallel 3x3 branches, one ordinary (dilation 1, local detail) and one per
dilation rate in D (context), fused by a 1x1 convolution with a residual connection.

The encoder returns multi-scale features (full, 1/2, 1/4, 1/8 resolution), used for pixel-level
control, and a global image embedding computed from them, used to condition the U-Net.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm2d(nn.Module):
    """Channel LayerNorm at each pixel (tile-invariant, unlike GroupNorm/BatchNorm)."""

    def __init__(self, c: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # On channels-last tensors the permute is free and layer_norm runs on contiguous rows.
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class RefineLayer(nn.Module):
    """Parallel dilated 3x3 convolutions (dilation 1 plus each rate in ``dilations``), fused 1x1."""

    def __init__(self, c: int, dilations: Sequence[int] = (3,)):
        super().__init__()
        self.dilations = (1, *dilations)
        self.norm = LayerNorm2d(c)
        self.branches = nn.ModuleList(nn.Conv2d(c, c, 3, padding=d, dilation=d) for d in self.dilations)
        self.fuse = nn.Conv2d(c * len(self.dilations), c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        y = torch.cat([F.gelu(b(y)) for b in self.branches], 1)
        return x + self.fuse(y)


class RefineEncoder(nn.Module):
    """Image -> multi-scale refine features ``[full, 1/2, 1/4, 1/8]`` and a global embedding."""

    def __init__(self, width: int = 16, levels: int = 4, dilations: Sequence[int] = (3,), embed_dim: int = 256):
        super().__init__()
        self.widths = [width * 2 ** i for i in range(levels)]
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.layers = nn.ModuleList(RefineLayer(c, dilations) for c in self.widths)
        self.downs = nn.ModuleList(nn.Conv2d(a, b, 2, stride=2) for a, b in zip(self.widths, self.widths[1:]))
        self.embed_mlp = nn.Sequential(nn.Linear(2 * sum(self.widths), embed_dim), nn.GELU(),
                                       nn.Linear(embed_dim, embed_dim))

    def features(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Multi-scale features of ``image`` ([B, 3, H, W], H and W multiples of 2**(levels-1))."""
        h = self.layers[0](self.stem(image * 2 - 1))
        feats = [h]
        for down, layer in zip(self.downs, self.layers[1:]):
            h = layer(down(h))
            feats.append(h)
        return feats

    def embed(self, image: torch.Tensor, size: int = 256) -> torch.Tensor:
        """Global image embedding ``[B, embed_dim]`` from the whole image seen at ``size`` px."""
        h, w = image.shape[-2:]
        scale = size / max(h, w)
        m = 2 ** (len(self.widths) - 1)
        th, tw = (max(m, round(h * scale / m) * m), max(m, round(w * scale / m) * m))
        small = F.interpolate(image, size=(th, tw), mode="bilinear", antialias=True, align_corners=False)
        pooled = [torch.cat([f.mean((2, 3)), f.std((2, 3), unbiased=False)], 1) for f in self.features(small)]
        return self.embed_mlp(torch.cat(pooled, 1))
