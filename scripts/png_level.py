#!/usr/bin/env python3
"""Time and size of PNG writing at zlib levels 1, 3 and 6 on a 4096 px photo-like image (the choice of
``m3unet.core.imageio.PNG_LEVEL``). Ratios are measured in one run: ``python scripts/png_level.py``."""
from __future__ import annotations

import io
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def main() -> int:
    import skimage.data
    x = torch.from_numpy(skimage.data.astronaut().copy()).permute(2, 0, 1).float()[None] / 255
    big = F.interpolate(x, size=(4096, 4096), mode="bicubic")[0]
    big = (big + 0.01 * torch.randn(big.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    arr = (big.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    for level in (6, 3, 1):
        best, size = float("inf"), 0
        for _ in range(2):
            buf = io.BytesIO()
            t = time.perf_counter()
            Image.fromarray(arr).save(buf, format="PNG", compress_level=level)
            best, size = min(best, time.perf_counter() - t), len(buf.getvalue())
        print(f"level {level}: {best:.2f} s, {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
