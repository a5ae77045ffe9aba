"""Regenerate the bundled example pair (assets/examples/*.png) from a held-out scikit-image photo,
the workflows' thumbnails for ComfyUI's Templates dialog (workflows/<name>.jpg: the example's
degraded left half beside the shipped model's automatic restoration, with the workflow's title)
and the pack's registry icon (assets/icon.png: a grainy, blocky half beside a clean one).

    .venv/bin/python scripts/make_example.py [--thumbnails] [--icon]
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
          "m3unet_motion_deblur": "Motion Deblur", "mllm_caption_restore": "Caption -> restore",
          "mllm_caption_sd15_refine": "Caption -> SD 1.5"}


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


def icon(size: int = 256) -> None:
    """assets/icon.png: a rounded tile whose left half is noisy and blocky, the right half clean."""
    from PIL import ImageDraw

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:size, 0:size] / size
    sky = np.stack([40 + 60 * yy, 90 + 80 * yy, 170 + 60 * (1 - yy)], -1)  # blue to teal
    sun = ((xx - 0.5) ** 2 + (yy - 0.42) ** 2) < 0.2 ** 2
    sky[sun] = (250, 200, 90)
    hill = yy > 0.68 + 0.08 * np.sin(xx * 6.3)
    sky[hill] = (40, 120, 70)
    clean = sky.clip(0, 255)
    noisy = clean + rng.normal(0, 38, clean.shape)
    blocks = 16  # JPEG-like blocks on the damaged half
    small = noisy[::blocks, ::blocks].repeat(blocks, 0).repeat(blocks, 1)
    damaged = 0.55 * noisy + 0.45 * small
    art = np.where(xx[..., None] < 0.5, damaged, clean).clip(0, 255).astype(np.uint8)
    tile = Image.fromarray(art).convert("RGBA")
    draw = ImageDraw.Draw(tile)
    draw.line([(size // 2, 0), (size // 2, size)], fill=(255, 255, 255, 255), width=max(2, size // 64))
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).rounded_rectangle([0, 0, size - 1, size - 1], radius=size // 6, fill=255)
    tile.putalpha(mask)
    out = REPO / "assets" / "icon.png"
    tile.quantize(colors=96, method=Image.Quantize.FASTOCTREE).save(out, optimize=True)  # a small file
    print(out, out.stat().st_size, "bytes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--thumbnails", action="store_true", help="only remake workflows/*.jpg")
    ap.add_argument("--icon", action="store_true", help="only remake assets/icon.png")
    args = ap.parse_args()
    if args.thumbnails or args.icon:
        if args.thumbnails:
            thumbnails()
        if args.icon:
            icon()
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
