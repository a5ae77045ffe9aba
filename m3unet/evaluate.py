"""``python -m m3unet eval``: PSNR/SSIM per degradation on held-out photos, with baselines.

Rows are the fixed settings of :func:`m3unet.degradation.eval_settings`; columns are the
degraded input, classical baselines where they apply (scikit-image non-local means and total
variation, and BM3D, given the true noise level: an advantage the blind M3UNet does not get),
and M3UNet at 1 step and at the default steps, blind (empty text) and with the canonical
restoration text. Photos are the held-out split of ``prepare-data`` (never used in training);
without it, the held-out photos bundled with scikit-image.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from . import degradation as deg
from .data import load_split, skimage_heldout
from .metrics import psnr, ssim
from .pipeline import DEFAULT_STEPS, Restorer
from .text import describe
from .weights import load_model

NOISE_SETTINGS = {"noise25"}


def noise_sigma(degs: list[deg.Degradation]) -> float:
    return sum(d.params.get("sigma", 0.0) ** 2 for d in degs if d.kind == "noise") ** 0.5


def baseline(name: str, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """Classical denoisers with the true noise level (skimage NLM / TV, BM3D)."""
    img = y.permute(1, 2, 0).numpy().astype(np.float64)
    if name == "nlm":
        from skimage.restoration import denoise_nl_means
        out = denoise_nl_means(img, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6,
                               fast_mode=True, channel_axis=-1)
    elif name == "tv":
        from skimage.restoration import denoise_tv_chambolle
        out = denoise_tv_chambolle(img, weight=1.1 * sigma, channel_axis=-1)
    elif name == "bm3d":
        import bm3d
        out = bm3d.bm3d_rgb(img, sigma_psd=sigma)
    else:
        raise ValueError(f"unknown baseline {name!r}; choose from nlm, tv, bm3d")
    return torch.from_numpy(np.clip(out, 0, 1)).float().permute(2, 0, 1)


def colour_shift(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Global colour drift in 1/255 units: the largest per-channel difference of mean colour."""
    return float((x.mean((1, 2)) - ref.mean((1, 2))).abs().max() * 255)


def heldout_photos(data: str | None) -> dict[str, np.ndarray]:
    if data is None and Path("data/photos/manifest.json").exists():
        data = "data/photos"
    return load_split(Path(data), "heldout") if data else skimage_heldout()


def center_crop(a: np.ndarray, size: int) -> torch.Tensor:
    x = torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1).float() / 255
    if size <= 0:
        return x
    _, h, w = x.shape
    s = min(size, h, w)
    return x[:, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s].contiguous()


def evaluate(model_path: str | None = None, data: str | None = None, crop: int = 256,
             steps: int = DEFAULT_STEPS, baselines: tuple[str, ...] = ("nlm", "tv", "bm3d"),
             settings: list[str] | None = None, log=print) -> dict:
    """Run the evaluation; returns ``{setting: {method: {"psnr", "ssim"}}}`` plus metadata."""
    restorer = Restorer(load_model(model_path))
    photos = heldout_photos(data)
    all_settings = deg.eval_settings()
    names = settings or list(all_settings)
    table: dict = {}
    for sname in names:
        degs = all_settings[sname]
        scores: dict[str, list[tuple[float, float]]] = {}
        t0 = time.time()
        for i, (pid, arr) in enumerate(sorted(photos.items())):
            x = center_crop(arr, crop)
            y = deg.apply(x, degs, torch.Generator().manual_seed(1000 + i))
            outs = {"input": y}
            if sname in NOISE_SETTINGS:
                for b in baselines:
                    outs[b] = baseline(b, y, noise_sigma(degs))
            img = y.permute(1, 2, 0)[None]
            for n in sorted({1, steps}):
                outs[f"m3unet_{n}step"] = restorer.restore(img, "", steps=n, seed=i)[0].permute(2, 0, 1)
            outs["m3unet_1step_text"] = restorer.restore(img, describe(degs), steps=1, seed=i)[0].permute(2, 0, 1)
            for k, v in outs.items():
                scores.setdefault(k, []).append((psnr(v, x), ssim(v, x), colour_shift(v, x)))
        table[sname] = {k: {"psnr": round(float(np.mean([s[0] for s in v])), 2),
                            "ssim": round(float(np.mean([s[1] for s in v])), 4),
                            "colour_shift": round(float(np.mean([s[2] for s in v])), 2)} for k, v in scores.items()}
        log(f"{sname}: " + ", ".join(f"{k} {v['psnr']:.2f}" for k, v in table[sname].items())
            + f" ({time.time() - t0:.0f}s)")
    return {"photos": sorted(photos), "crop": crop, "steps": steps, "table": table}


def to_markdown(result: dict) -> str:
    """The result as a Markdown table (PSNR dB / SSIM; gain of the default steps over the input)."""
    cols: list[str] = []
    for row in result["table"].values():
        cols += [c for c in row if c not in cols]
    best = f"m3unet_{result['steps']}step"
    head = ("| setting | " + " | ".join(cols) + f" | gain of {best} (dB) | colour shift in / out (1/255) |\n|---|"
            + "---|" * (len(cols) + 2) + "\n")
    lines = []
    for sname, row in result["table"].items():
        cells = [f"{row[c]['psnr']:.2f} / {row[c]['ssim']:.3f}" if c in row else "-" for c in cols]
        lines.append(f"| {sname} | " + " | ".join(cells) + f" | {row[best]['psnr'] - row['input']['psnr']:+.2f} | "
                     f"{row['input']['colour_shift']:.1f} / {row[best]['colour_shift']:.1f} |")
    return head + "\n".join(lines) + "\n"


def main_args(args) -> int:
    torch.set_num_threads(2)
    baselines = tuple(b for b in args.baselines.split(",") if b and b != "none")
    settings = args.settings.split(",") if args.settings else None
    crop = 256 if args.crop is None else args.crop
    result = evaluate(args.model, args.data, crop, args.steps or DEFAULT_STEPS, baselines, settings)
    print(f"\nheld-out photos: {', '.join(result['photos'])}; centre crops {result['crop']} px; PSNR dB / SSIM\n")
    print(to_markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0
