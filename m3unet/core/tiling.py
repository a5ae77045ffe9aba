"""Tiled inference with overlap blending: flat memory on large images and no seams.

Tiles form a grid; each axis is split into ``n`` equal, overlapping spans. Each tile's output is
weighted by a separable ramp (linear over the overlap, 1 in the core, no ramp at the image
border) and the weights are normalised per axis, so that they sum to exactly 1 at every pixel
(the sum over a grid of outer products is the outer product of the per-axis sums). No full-size
weight map is ever allocated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Span:
    start: int
    stop: int


def spans(length: int, tile: int, overlap: int, align: int = 8) -> list[Span]:
    """Split ``[0, length)`` into overlapping spans of about ``tile + overlap`` px.

    Starts are multiples of ``align`` (the U-Net's down-sampling factor) so that every tile sees
    the same pixel phase as the whole image; the last span ends at ``length``.
    """
    if length <= tile + overlap:
        return [Span(0, length)]
    n = math.ceil((length - overlap) / tile)
    size = math.ceil((length + (n - 1) * overlap) / n)
    starts = [(round(i * (length - size) / (n - 1)) // align) * align for i in range(n)]
    return [Span(s, min(length, s + size) if i < n - 1 else length) for i, s in enumerate(starts)]


def axis_weights(length: int, parts: list[Span]) -> list[torch.Tensor]:
    """Per-span 1-D blending weights, normalised so that they sum to 1 at every position."""
    ws = []
    for i, sp in enumerate(parts):
        pos = torch.arange(sp.start, sp.stop, dtype=torch.float32)
        w = torch.ones(sp.stop - sp.start)
        if i > 0:  # ramp up over the overlap with the previous span
            ov = parts[i - 1].stop - sp.start
            w = torch.minimum(w, ((pos - sp.start + 0.5) / max(ov, 1)).clamp(min=1e-3))
        if i < len(parts) - 1:
            ov = sp.stop - parts[i + 1].start
            w = torch.minimum(w, ((sp.stop - pos - 0.5) / max(ov, 1)).clamp(min=1e-3))
        ws.append(w)
    total = torch.zeros(length)
    for sp, w in zip(parts, ws):
        total[sp.start:sp.stop] += w
    return [w / total[sp.start:sp.stop] for sp, w in zip(parts, ws)]


def grid(height: int, width: int, tile: int, overlap: int, align: int = 8):
    """Yield ``(ys, xs, weight[h, w])`` for every tile of an image (row-major)."""
    rows, cols = spans(height, tile, overlap, align), spans(width, tile, overlap, align)
    wr, wc = axis_weights(height, rows), axis_weights(width, cols)
    for r, wy in zip(rows, wr):
        for c, wx in zip(cols, wc):
            yield r, c, wy[:, None] * wx[None, :]


def count(height: int, width: int, tile: int, overlap: int) -> int:
    """Number of tiles :func:`grid` yields."""
    return len(spans(height, tile, overlap)) * len(spans(width, tile, overlap))
