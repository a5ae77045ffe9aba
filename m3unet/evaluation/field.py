"""``python -m m3unet eval --peers``: quality of M3UNet next to its peers on held-out photos.

For each degradation (noise, defocus blur, motion blur, JPEG, low light, the blur+noise+JPEG mix,
and x2 / x4 down-sampling) and each held-out photo (the ``heldout`` split, centre crops), the
degraded input is restored by:

* M3UNet, blind (empty text), at every step count of ``sweep`` (which includes 1 and the default);
* the classical reference for that degradation, given what a blind method does not get:
  BM3D with the true noise sigma (noise, mix); Richardson-Lucy and Wiener with the TRUE blur
  kernel (blur, motion), each at its best setting of a small grid chosen per image with the clean
  photo (an oracle: an upper reference, not a usable method);
* for down-sampled inputs, the learned upscalers waifu2x (upconv_7_photo, x2, twice for x4) and
  Real-ESRGAN x4plus (x4, resized when the factor is 2), fed the small image, while M3UNet and the
  "input" column get the bicubic enlargement (as in :func:`m3unet.training.synthesis.apply`).

Fidelity: PSNR / SSIM against the clean photo. Perceptual (no reference, lower is better):
NIQE and BRISQUE (:mod:`m3unet.evaluation.noref`). Crops default to 288 px, so NIQE sees 3x3 of its
96 px blocks. The same seeds as ``python -m m3unet eval`` are used for the degradations.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..training import synthesis as deg
from . import peers
from ..training.data import center_crop, evaluation_photos
from .quality import noise_sigma
from ..core.metrics import psnr, ssim
from .noref import brisque, niqe
from ..restore.pipeline import DEFAULT_STEPS, Restorer
from ..core.weights import load_model

SETTINGS = ("noise25", "blur2", "motion", "jpeg15", "lowlight", "mix", "lowres2x", "lowres4x")
RL_ITERATIONS = (10, 30, 100)
WIENER_BALANCE = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def field_settings() -> dict[str, list[deg.Degradation]]:
    """The evaluation settings of ``eval`` plus x4 down-sampling (haze is left out: no peer restores it)."""
    s = deg.eval_settings()
    s["lowres4x"] = [deg.make("lowres", 1.0, scale=4.0)]
    return {k: s[k] for k in SETTINGS}


def blur_kernel(degs: list[deg.Degradation]) -> torch.Tensor | None:
    """The true blur kernel of a setting (Gaussian or motion), or None without blur."""
    for d in degs:
        if d.kind == "blur":
            return deg.gaussian_kernel(d.params["sigma"])
        if d.kind == "motion":
            p = d.params
            return deg.motion_kernel(p["length"], p["angle"], p["curve"], p["seed"])
    return None


def _best(cands: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return max(cands, key=lambda c: psnr(c, x))


def peer_outputs(sname: str, degs: list[deg.Degradation], x: torch.Tensor, y: torch.Tensor,
                 threads: int = 2) -> dict[str, torch.Tensor]:
    """The classical / learned peers that apply to this setting (see the module docstring)."""
    outs: dict[str, torch.Tensor] = {}
    kinds = {d.kind for d in degs}
    if "noise" in kinds and sname in ("noise25", "mix"):
        from .quality import baseline
        outs["bm3d"] = baseline("bm3d", y, noise_sigma(degs))
    k = blur_kernel(degs)
    if k is not None and sname in ("blur2", "motion"):
        outs["rl_true_kernel"] = _best(peers.richardson_lucy(y, k, RL_ITERATIONS), x)
        outs["wiener_true_kernel"] = _best([peers.wiener(y, k, b) for b in WIENER_BALANCE], x)
    if kinds == {"lowres"}:
        small = peers.downsample(x, degs[0].params["scale"])
        size = tuple(x.shape[-2:])
        outs["waifu2x"] = peers.super_resolve("waifu2x", small, size, threads)
        outs["realesrgan"] = peers.super_resolve("realesrgan", small, size, threads)
    return outs


def evaluate_field(model_path: str | None = None, data: str | None = None, split: str = "validation", crop: int = 288,
                   steps: int = DEFAULT_STEPS, sweep: tuple[int, ...] = (1, 2, 4),
                   settings: list[str] | None = None, max_photos: int | None = None, threads: int = 2,
                   log=print) -> dict:
    """Run the comparison; returns per-setting, per-method mean PSNR/SSIM/NIQE/BRISQUE and the sweep."""
    restorer = Restorer(load_model(model_path))
    photos = sorted(evaluation_photos(data, split).items())[:max_photos]
    all_settings = field_settings()
    names = settings or list(all_settings)
    unknown = [n for n in names if n not in all_settings]
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; choose from {', '.join(all_settings)}")
    sweep = tuple(sorted(set(sweep) | {1, steps}))
    crops = [center_crop(arr, crop) for _, arr in photos]
    clean = {"niqe": float(np.mean([niqe(x) for x in crops])), "brisque": float(np.mean([brisque(x) for x in crops]))}
    table: dict = {}
    for sname in names:
        degs = all_settings[sname]
        scores: dict[str, list[tuple[float, ...]]] = {}
        t0 = time.time()
        for i, x in enumerate(crops):
            y = deg.apply(x, degs, torch.Generator().manual_seed(1000 + i))
            outs = {"input": y, **peer_outputs(sname, degs, x, y, threads)}
            img = y.permute(1, 2, 0)[None]
            for n in sweep:
                outs[f"m3unet_{n}step"] = restorer.restore(img, "", steps=n, seed=i)[0].permute(2, 0, 1)
            for k, v in outs.items():
                scores.setdefault(k, []).append((psnr(v, x), ssim(v, x), niqe(v), brisque(v)))
        table[sname] = {k: dict(zip(("psnr", "ssim", "niqe", "brisque"),
                                    (round(float(np.mean([s[j] for s in v])), r) for j, r in
                                     zip(range(4), (2, 4, 3, 2))))) for k, v in scores.items()}
        log(f"{sname}: " + ", ".join(f"{k} {v['psnr']:.2f}/{v['niqe']:.2f}" for k, v in table[sname].items())
            + f" ({time.time() - t0:.0f}s)")
    return {"photos": [p for p, _ in photos], "crop": crop, "steps": steps, "sweep": list(sweep),
            "clean": {k: round(v, 3) for k, v in clean.items()}, "table": table}


def _columns(result: dict) -> list[str]:
    cols: list[str] = []
    shown = {"m3unet_1step", f"m3unet_{result['steps']}step"}
    for row in result["table"].values():
        cols += [c for c in row if c not in cols and (not c.startswith("m3unet") or c in shown)]
    m3 = [c for c in cols if c.startswith("m3unet")]
    return [c for c in cols if not c.startswith("m3unet")] + sorted(m3, key=lambda c: int(c[7:-4]))


def to_markdown(result: dict) -> str:
    """Two tables: fidelity (PSNR dB / SSIM) and no-reference quality (NIQE / BRISQUE, lower is better)."""
    cols = _columns(result)
    out = []
    for title, (a, b, fa, fb) in (("PSNR dB / SSIM (higher is better)", ("psnr", "ssim", ".2f", ".3f")),
                                  ("NIQE / BRISQUE (lower is better; clean photos: "
                                   f"{result['clean']['niqe']:.2f} / {result['clean']['brisque']:.1f})",
                                   ("niqe", "brisque", ".2f", ".1f"))):
        out.append(f"{title}\n\n| setting | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
        for sname, row in result["table"].items():
            cells = [f"{row[c][a]:{fa}} / {row[c][b]:{fb}}" if c in row else "-" for c in cols]
            out.append(f"| {sname} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def plot_steps(result: dict, path: str) -> None:
    """PSNR gain over the input and NIQE against M3UNet's number of sampling steps, per degradation."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sweep = result["sweep"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for j, (sname, row) in enumerate(result["table"].items()):
        c = plt.cm.tab10(j % 10)
        gain = [row[f"m3unet_{n}step"]["psnr"] - row["input"]["psnr"] for n in sweep]
        a1.plot(sweep, gain, "o-", color=c, label=sname)
        a2.plot(sweep, [row[f"m3unet_{n}step"]["niqe"] for n in sweep], "o-", color=c, label=sname)
    a2.axhline(result["clean"]["niqe"], color="k", ls="--", lw=1, label="clean photos")
    a1.axhline(0, color="k", lw=0.8)
    for a, t in ((a1, "PSNR gain over the degraded input (dB)"), (a2, "NIQE of the output (lower is better)")):
        a.set_xscale("log", base=2)
        a.set_xticks(sweep)
        a.set_xticklabels([str(n) for n in sweep])
        a.set_xlabel("M3UNet sampling steps")
        a.set_title(t, fontsize=10)
        a.grid(alpha=0.3)
    a2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(f"M3UNet vs number of steps: {len(result['photos'])} held-out photos, {result['crop']} px crops",
                 fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main_args(args) -> int:
    torch.set_num_threads(args.threads)
    settings = args.settings.split(",") if args.settings else None
    sweep = tuple(int(s) for s in args.sweep.split(","))
    crop = 288 if args.crop is None else args.crop
    result = evaluate_field(args.model, args.data, args.split, crop, args.steps or DEFAULT_STEPS, sweep, settings,
                            args.max_photos, args.threads)
    print(f"\nheld-out photos: {', '.join(result['photos'])}; centre crops {result['crop']} px\n")
    print(to_markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.plot:
        plot_steps(result, args.plot)
        print(f"wrote {args.plot}")
    return 0
