"""The README's before/after figure, ``docs/before_after.png``.

Three validation photos that ship inside scikit-image (never trained on), degraded with the
evaluation's settings, restored by the automatic restore (what ``python -m m3unet restore`` does by
default) and shown as degraded | restored, one row each:

1. the bundled example: skimage-coffee with the ``mix`` setting (blur 1.5 px, noise 15/255, JPEG
   quality 30; seed 7, as ``scripts/make_example.py`` makes it), restored whole, the cup cropped;
2. ``noise25`` (Gaussian noise, sigma 25/255) on a 256 px crop of skimage-chelsea;
3. ``blur2`` (defocus blur, sigma 2 px, with 2/255 noise) on a 256 px crop of skimage-astronaut.

Prints each row's PSNR before and after against the clean photo. About a minute on two cores.

    .venv/bin/python scripts/readme_figure.py [--out docs/before_after.png] [--panel 180]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from m3unet.auto import build_auto_restorer  # noqa: E402
from m3unet.core import load_model  # noqa: E402
from m3unet.core.metrics import psnr  # noqa: E402
from m3unet.restore import Restorer  # noqa: E402
from m3unet.training import synthesis as deg  # noqa: E402
from m3unet.training.data import skimage_validation  # noqa: E402

# (photo, setting, degradation seed, region restored (centre y, x, side; 0: whole photo), panel centre y, x)
ROWS = [("skimage-coffee", "mix", 7, (0, 0, 0), (150, 290)),
        ("skimage-chelsea", "noise25", 0, (150, 225, 256), (128, 128)),
        ("skimage-astronaut", "blur2", 0, (130, 256, 256), (118, 128))]


def crop(a: np.ndarray, cy: int, cx: int, side: int) -> np.ndarray:
    """The ``side`` px square centred at (cy, cx), kept inside the image."""
    y0 = min(max(cy - side // 2, 0), a.shape[0] - side)
    x0 = min(max(cx - side // 2, 0), a.shape[1] - side)
    return a[y0:y0 + side, x0:x0 + side]


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[C, H, W]`` float 0-1 -> ``[H, W, C]`` uint8."""
    return (x.permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "before_after.png"))
    ap.add_argument("--panel", type=int, default=180, help="side of each panel in px")
    ap.add_argument("--gap", type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(2)

    photos = skimage_validation()
    settings = deg.eval_settings()
    auto = build_auto_restorer(Restorer(load_model()))
    s, g = args.panel, args.gap
    sheet = Image.new("RGB", (2 * s + g, len(ROWS) * s + (len(ROWS) - 1) * g), "white")
    for i, (pid, setting, seed, (cy, cx, side), (py, px)) in enumerate(ROWS):
        photo = photos[pid] if not side else crop(photos[pid], cy, cx, side)
        clean = torch.from_numpy(photo.copy()).permute(2, 0, 1).float() / 255
        degraded = deg.apply(clean, settings[setting], torch.Generator().manual_seed(seed))
        degraded = torch.from_numpy(to_uint8(degraded)).permute(2, 0, 1).float() / 255  # as saved to a file
        result = auto.run(degraded.permute(1, 2, 0)[None], seed=0)
        restored = result.image[0].permute(2, 0, 1)
        kept = ", ".join(f"{st.task}" for st in result.reports[0].steps if st.outcome == "kept") or "nothing"
        print(f"{pid} {setting}: PSNR {psnr(degraded, clean):.2f} -> {psnr(restored, clean):.2f} dB (kept: {kept})")
        for j, x in enumerate((degraded, restored)):
            panel = crop(to_uint8(x), py, px, s)
            sheet.paste(Image.fromarray(panel), (j * (s + g), i * (s + g)))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"{args.out}: {sheet.size[0]}x{sheet.size[1]} px, {Path(args.out).stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
