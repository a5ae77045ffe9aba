"""Regenerate the bundled example pair (assets/examples/*.png) from a held-out scikit-image photo,
and the workflows' thumbnails for ComfyUI's Templates dialog (workflows/<name>.jpg: the example's
degraded left half beside the shipped model's automatic restoration, with the workflow's title).

    .venv/bin/python scripts/make_example.py [--thumbnails]
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo's m3unet, run from anywhere
from m3unet.training import synthesis as deg
from m3unet.training.data import skimage_validation

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "assets" / "examples"
WORKFLOWS = REPO / "workflows"
THUMB = 256
TITLES = {"m3unet_auto_restore": "Auto Restore", "m3unet_basic_restore": "Basic restore",
          "m3unet_classify_then_restore": "Classify, then restore", "m3unet_kernel_deblur": "Kernel Deblur",
          "mllm_caption_restore": "Caption -> restore", "mllm_caption_sd15_refine": "Caption -> SD 1.5"}


def thumbnails() -> None:
    """workflows/<name>.jpg for every workflow: before | after at 256 px with the workflow's title."""
    from PIL import ImageDraw, ImageFont

    degraded = OUT / "coffee_degraded.png"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "m3unet", "restore", str(degraded), "-o", tmp], check=True, cwd=REPO)
        restored = Image.open(Path(tmp) / degraded.name).convert("RGB")
    before = Image.open(degraded).convert("RGB")
    w, h = before.size
    box = ((w - h) // 2, 0, (w + h) // 2, h)  # the middle square
    square = before.crop(box)
    square.paste(restored.crop(box).crop((h // 2, 0, h, h)), (h // 2, 0))
    square = square.resize((THUMB, THUMB), Image.LANCZOS)
    font = ImageFont.load_default(size=15)
    for path in sorted(WORKFLOWS.glob("*.json")):
        img = square.copy()
        draw = ImageDraw.Draw(img)
        draw.line([(THUMB // 2, 0), (THUMB // 2, THUMB - 30)], fill=(255, 255, 255), width=2)
        draw.rectangle([0, THUMB - 30, THUMB, THUMB], fill=(24, 24, 24))
        draw.text((8, THUMB - 24), TITLES.get(path.stem, path.stem), fill=(240, 240, 240), font=font)
        draw.text((THUMB - 62, THUMB - 24), "M3UNet", fill=(150, 200, 255), font=font)
        img.save(path.with_suffix(".jpg"), quality=85, optimize=True)
        print(path.with_suffix(".jpg"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--thumbnails", action="store_true", help="only remake workflows/*.jpg")
    if ap.parse_args().thumbnails:
        thumbnails()
        return
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
