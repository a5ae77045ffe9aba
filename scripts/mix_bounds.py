"""How far can restoration go on `eval`'s `mix` setting (Gaussian blur 1.5 px, then noise 15/255,
then JPEG quality 30)? The quality target there is +3 dB over the input (docs/results.md). On
the same 9 validation 256 px centre crops and seeds as `python -m m3unet eval`, this prints mean
PSNR (dB) against the clean photo of:

* the input;
* the photo blurred alone, with no noise and no JPEG (what perfect noise and JPEG removal
  without any deblurring would give);
* a classical pipeline given the TRUE parameters: BM3D (`bm3d` 4.0.3, a dev requirement) at
  noise levels 10/15/20 (JPEG adds noise of its own), then Wiener deconvolution with the true
  1.5 px Gaussian (``m3unet.auto.deblur.wiener_deconvolve``) at three balances.

Usage: ``.venv/bin/python scripts/mix_bounds.py`` (about 5 minutes on one core).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from m3unet.training import synthesis as deg  # noqa: E402
from m3unet.auto.deblur import wiener_deconvolve  # noqa: E402
from m3unet.training.data import center_crop, evaluation_photos  # noqa: E402
from m3unet.core.metrics import psnr  # noqa: E402


def main() -> None:
    import bm3d
    torch.set_num_threads(1)
    degs = deg.eval_settings()["mix"]
    blur = next(d for d in degs if d.kind == "blur")
    res: dict[str, list[float]] = {}
    for i, (pid, arr) in enumerate(sorted(evaluation_photos(None).items())):
        x = center_crop(arr, 256)
        y = deg.apply(x, degs, torch.Generator().manual_seed(1000 + i))  # as `eval`
        res.setdefault("input", []).append(psnr(y, x))
        res.setdefault("blurred alone (no noise, no JPEG)", []).append(psnr(deg.apply_one(x, blur), x))
        for s in (10, 15, 20):
            d = bm3d.bm3d_rgb(y.permute(1, 2, 0).numpy().astype(np.float64), sigma_psd=s / 255)
            d = torch.from_numpy(np.clip(d, 0, 1)).float().permute(2, 0, 1)
            res.setdefault(f"BM3D {s}/255", []).append(psnr(d, x))
            for balance in (0.003, 0.01, 0.03):
                w = wiener_deconvolve(d, blur.params["sigma"], balance).clamp(0, 1)
                res.setdefault(f"BM3D {s}/255 + Wiener (true 1.5 px, balance {balance})", []).append(psnr(w, x))
        print(f"{pid} done", file=sys.stderr, flush=True)
    for k, v in res.items():
        print(f"{k}: {np.mean(v):.2f}")


if __name__ == "__main__":
    main()
