"""Reading and writing image files as uint8 ``[H, W, C]`` tensors (C = 1, 3 or 4)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

Image.MAX_IMAGE_PIXELS = 16384 * 16384  # large scans are fine; the restorer tiles them


def read_image(path: Path | str) -> torch.Tensor:
    """Read a PNG/JPEG/WebP/TIFF... file as uint8 ``[H, W, C]``: grey -> 1, RGB -> 3, with alpha -> 4."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: not a readable image ({e}); is the file complete and an image format "
                         "PIL reads (PNG, JPEG, WebP, TIFF, BMP)?") from e
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if img.mode in ("L", "I;16", "I", "F", "1"):
        arr = np.asarray(img.convert("F"), dtype=np.float32)
        scale = 65535.0 if img.mode in ("I;16", "I") and arr.max() > 255 else 255.0
        arr = (arr / scale * 255 + 0.5).clip(0, 255).astype(np.uint8)[..., None]
    elif img.mode == "LA":
        arr = np.asarray(img)
    else:
        arr = np.asarray(img.convert("RGBA" if has_alpha else "RGB"))
    if arr.ndim == 3 and arr.shape[-1] == 2:  # LA: grey + alpha -> RGBA
        arr = np.concatenate([arr[..., :1].repeat(3, -1), arr[..., 1:]], -1)
    return torch.from_numpy(np.array(arr, copy=True))


def write_image(path: Path | str, image: torch.Tensor) -> None:
    """Write uint8 ``[H, W, C]`` as PNG (mode L, RGB or RGBA by C)."""
    arr = image.cpu().numpy()
    arr = arr[..., 0] if arr.shape[-1] == 1 else arr
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")


def side_by_side(before: torch.Tensor, after: torch.Tensor, gap: int = 8) -> torch.Tensor:
    """A before | after comparison image (uint8 [H, W, 3])."""
    def rgb(x: torch.Tensor) -> torch.Tensor:
        return x[..., :3] if x.shape[-1] >= 3 else x.expand(*x.shape[:-1], 3)
    b, a = rgb(before), rgb(after)
    sep = torch.full((b.shape[0], gap, 3), 255, dtype=torch.uint8)
    return torch.cat([b, sep, a], 1)
