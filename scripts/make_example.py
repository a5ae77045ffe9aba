"""Regenerate the bundled example pair (assets/examples/*.png) from a held-out scikit-image photo.

    .venv/bin/python scripts/make_example.py
"""
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from m3unet.training import synthesis as deg
from m3unet.training.data import skimage_validation

OUT = Path(__file__).resolve().parent.parent / "assets" / "examples"


def main() -> None:
    photo = skimage_validation()["skimage-coffee"]  # held out: never used in training
    clean = torch.from_numpy(photo.copy()).permute(2, 0, 1).float() / 255
    degraded = deg.apply(clean, deg.eval_settings()["mix"], torch.Generator().manual_seed(7))
    OUT.mkdir(parents=True, exist_ok=True)
    for name, x in (("coffee_clean.png", clean), ("coffee_degraded.png", degraded)):
        arr = (x.permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
        Image.fromarray(arr).save(OUT / name)
        print(OUT / name, arr.shape)


if __name__ == "__main__":
    main()
