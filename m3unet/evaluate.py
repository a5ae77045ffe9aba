"""``python -m m3unet eval``: PSNR/SSIM per degradation on held-out photos, with baselines.

Rows are the fixed settings of :func:`m3unet.degradation.eval_settings`; columns are the
degraded input, classical baselines where they apply (scikit-image non-local means and total
variation, and BM3D, given the true noise level: an advantage the blind M3UNet does not get),
and M3UNet at 1 step and at the default steps, blind (empty text) and with the canonical
restoration text. Photos are the held-out split of ``prepare-data`` (never used in training);
without it, the held-out photos bundled with scikit-image.

``--text-ablation`` measures the text prior instead (paper Sec. 3.3: restoration guided by the
text): on random held-out mixtures of two or three degradations, M3UNet with no text, with the
correct restoration text (:func:`m3unet.text.describe`) and with a wrong one; and its
controllability: on noise + blur, "remove the noise" and "remove the blur" should each land
closer to their own target (the photo with only that degradation removed).
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
    if getattr(args, "text_ablation", False):
        result = text_ablation(args.model, args.data, args.crop, args.steps or DEFAULT_STEPS, args.per_photo)
        print(f"\nheld-out photos: {', '.join(result['photos'])}\n")
        print(ablation_markdown(result))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
        return 0
    baselines = tuple(b for b in args.baselines.split(",") if b and b != "none")
    settings = args.settings.split(",") if args.settings else None
    result = evaluate(args.model, args.data, args.crop, args.steps or DEFAULT_STEPS, baselines, settings)
    print(f"\nheld-out photos: {', '.join(result['photos'])}; centre crops {result['crop']} px; PSNR dB / SSIM\n")
    print(to_markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


# ---------------------------------------------------------------------------- text ablation
WRONG_ORDER = ("jpeg", "haze", "noise", "lowres", "blur", "lowlight", "motion")


def wrong_text(degs: list[deg.Degradation]) -> str:
    """A restoration text naming two degradations the image does NOT have (moderate severity)."""
    present = {deg.LABEL[d.kind] for d in degs}
    if present & {"blur", "motion"}:
        present |= {"blur", "motion"}
    absent = [k for k in WRONG_ORDER if k not in present][:2]
    return describe([deg.make(k, 0.5) for k in absent])


def ablation_mixtures(n_photos: int, per_photo: int) -> list[list[list[deg.Degradation]]]:
    """Seeded mixtures of two or three degradations, ``per_photo`` for each photo."""
    return [[deg.sample(torch.Generator().manual_seed(5000 + 100 * i + j), p_clean=0.0, p_mix=1.0)
             for j in range(per_photo)] for i in range(n_photos)]


CONTROL_DEGS = {"noise": deg.make("noise", (25 - 3) / 47), "blur": deg.make("blur", (2 - 0.6) / 3.0)}


def text_ablation(model_path: str | None = None, data: str | None = None, crop: int = 256,
                  steps: int = DEFAULT_STEPS, per_photo: int = 2, log=print) -> dict:
    """No text vs correct vs wrong text on mixtures, and noise-only vs blur-only controllability."""
    restorer = Restorer(load_model(model_path))
    photos = sorted(heldout_photos(data).items())
    mixes = ablation_mixtures(len(photos), per_photo)
    t0 = time.time()
    mix_scores: dict[str, list[float]] = {"input": [], "no text": [], "correct text": [], "wrong text": []}
    examples = []
    ctrl: dict[str, dict[str, list[float]]] = {}
    diffs = []
    for i, (pid, arr) in enumerate(photos):
        x = center_crop(arr, crop)
        for j, degs in enumerate(mixes[i]):
            y = deg.apply(x, degs, torch.Generator().manual_seed(7000 + 100 * i + j))
            img = y.permute(1, 2, 0)[None]
            texts = {"no text": "", "correct text": describe(degs), "wrong text": wrong_text(degs)}
            mix_scores["input"].append(psnr(y, x))
            row = {"photo": pid, "degradations": [(d.kind, round(d.severity, 2)) for d in degs], "texts": texts}
            for name, t in texts.items():
                out = restorer.restore(img, t, steps=steps, seed=i)[0].permute(2, 0, 1)
                mix_scores[name].append(psnr(out, x))
                row[name] = round(mix_scores[name][-1], 2)
            examples.append(row)
        # Controllability: noise + blur; targets keep the other degradation (same noise sample).
        both = [CONTROL_DEGS["blur"], CONTROL_DEGS["noise"]]
        seed = 9000 + i
        y = deg.apply(x, both, torch.Generator().manual_seed(seed))
        refs = {"noise removed (blur kept)": deg.apply(x, [CONTROL_DEGS["blur"]]),
                "blur removed (noise kept)": deg.apply(x, [CONTROL_DEGS["noise"]], torch.Generator().manual_seed(seed)),
                "clean": x}
        texts = {"no text": "", "noise only: " + describe([CONTROL_DEGS["noise"]]): describe([CONTROL_DEGS["noise"]]),
                 "blur only: " + describe([CONTROL_DEGS["blur"]]): describe([CONTROL_DEGS["blur"]]),
                 "both: " + describe(both): describe(both)}
        outs = {}
        img = y.permute(1, 2, 0)[None]
        for name, t in texts.items():
            outs[name] = restorer.restore(img, t, steps=steps, seed=i)[0].permute(2, 0, 1)
        outs = {"input": y, **outs}
        for name, out in outs.items():
            for rname, ref in refs.items():
                ctrl.setdefault(name, {}).setdefault(rname, []).append(psnr(out, ref))
        n_out, b_out = list(outs.values())[2], list(outs.values())[3]
        diffs.append(float((n_out - b_out).abs().mean() * 255))
        log(f"{pid}: done ({time.time() - t0:.0f}s)")
    mean = lambda v: round(float(np.mean(v)), 2)  # noqa: E731
    return {"photos": [p for p, _ in photos], "crop": crop, "steps": steps, "per_photo": per_photo,
            "mixtures": {k: mean(v) for k, v in mix_scores.items()},
            "control": {k: {r: mean(v) for r, v in row.items()} for k, row in ctrl.items()},
            "control_mean_abs_diff": round(float(np.mean(diffs)), 2), "examples": examples}


def ablation_markdown(result: dict) -> str:
    """The text ablation as two Markdown tables."""
    m = result["mixtures"]
    lines = [f"Mixed degradations ({len(result['examples'])} images: {result['per_photo']} random mixtures of 2-3 "
             f"degradations per held-out photo, {result['crop']} px crops, {result['steps']} step(s)); PSNR dB vs clean:",
             "", "| text | PSNR | vs no text (dB) |", "|---|---|---|"]
    for k, v in m.items():
        lines.append(f"| {k} | {v:.2f} | {v - m['no text']:+.2f} |" if k != "input" else f"| (degraded input) | {v:.2f} | |")
    refs = list(next(iter(result["control"].values())))
    lines += ["", f"Controllability on noise (sigma 25) + Gaussian blur (sigma 2); PSNR dB against each target; "
              f"mean |noise-only output - blur-only output| = {result['control_mean_abs_diff']:.2f} / 255:", "",
              "| text | " + " | ".join(refs) + " |", "|---|" + "---|" * len(refs)]
    for k, row in result["control"].items():
        lines.append(f"| {k if k != 'input' else '(degraded input)'} | " + " | ".join(f"{row[r]:.2f}" for r in refs) + " |")
    return "\n".join(lines) + "\n"
