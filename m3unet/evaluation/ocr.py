"""``python -m m3unet eval --ocr``: do restorers keep the letters? OCR character accuracy on text lines.

Diffusion restorers are known to hallucinate letters; the paper is about text images. Fixed
lines of our own (not the random word pages that training renders with ``render_page``) are
drawn with :func:`m3unet.training.textimage.render_line` in several fonts and sizes, degraded (defocus
blur, noise, JPEG, x4 down-sampling; fixed parameters and seeds), restored, and read with
RapidOCR (PP-OCRv4 recognition, ONNX models shipped in ``rapidocr-onnxruntime``; each image is
one line, so only the recogniser runs). Character accuracy = 1 - CER, where CER is the
Levenshtein distance between the reading and the true line divided by the line's length, over
the non-space characters (case and punctuation count; full-width forms are folded to ASCII;
spaces are left out because the recogniser often merges words even on clean lines).

Methods: the degraded input; M3UNet blind (empty text) at 1 step and the default steps, and at the
default steps with the restoration text (:func:`m3unet.core.text.describe`); Real-ESRGAN x4plus (same
size: x4 then resized back; down-sampled: x4 from the small image, resized to the line's size);
and the classical reference (BM3D with the true sigma for noise, Wiener with the true kernel for
blur, waifu2x for down-sampling).
"""
from __future__ import annotations

import json
import time
import unicodedata
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..training import synthesis as deg
from . import peers
from ..core.metrics import psnr
from ..restore.pipeline import DEFAULT_STEPS, Restorer
from ..core.text import describe
from ..training.textimage import render_line
from ..core.weights import load_model

# Our own lines (training pages use random words from textimage.WORDS with seeds >= 1_000_000).
LINES = (
    "Invoice 4821: seven crates of pears",
    "Harbour Road 17, Kingsbridge",
    "Quartz clocks were mended by hand",
    "Platform 9 departs at 14:35",
    "Juniper, thyme and wild sorrel",
    "Received with thanks, J. Okafor",
    "Volume XII, pages 208-231",
    "Keep dry; store below 25 degrees",
    "The ferry waits for no one",
    "Serial no. 73-0519-B",
    "Grandmother's recipe for plum jam",
    "Exit via the north stairwell",
)
FONTS = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "cmr10.ttf", "DejaVuSansMono.ttf")
SIZES = (18, 24, 32)
LOWRES_SCALE = 4.0


def ocr_settings() -> dict[str, list[deg.Degradation]]:
    """Fixed degradations of the OCR test: the strongest of each kind within M3UNet's training ranges."""
    return {
        "blur": [deg.make("blur", 0.8, sigma=3.0)],
        "noise": [deg.make("noise", 1.0, sigma=50 / 255)],
        "jpeg": [deg.make("jpeg", 1.0, quality=8)],
        "lowres": [deg.make("lowres", 1.0, scale=LOWRES_SCALE)],
    }


def _font_and_size(i: int) -> tuple[str, int]:
    """The font and size of line ``i``: every font at every size across the lines."""
    return FONTS[i % len(FONTS)], SIZES[(i // len(FONTS)) % len(SIZES)]


def text_lines(n: int | None = None) -> list[tuple[str, str, int]]:
    """``(text, font, size)`` of each test line: every font at every size across the lines."""
    out = [(t, *_font_and_size(i)) for i, t in enumerate(LINES)]
    return out[:n]


VALIDATION_SEED = 9_000_000


def validation_lines(n: int = 48) -> list[tuple[str, str, int]]:
    """Lines for choosing checkpoints, never for reporting: random words of the training vocabulary
    (:func:`m3unet.training.textimage.random_line`, seeds ``VALIDATION_SEED + i``), in the test's fonts and
    sizes. The test :data:`LINES` stay unseen until a checkpoint is chosen on these."""
    import random

    from ..training.textimage import random_line
    out = []
    for i in range(n):
        rng = random.Random(VALIDATION_SEED + i)
        out.append((random_line(rng, rng.randint(3, 6)), *_font_and_size(i)))
    return out


def validate_ocr(model_path: str | None, setting: str = "lowres", n_lines: int = 48, steps: int = 1,
                 threads: int = 1) -> dict:
    """Character accuracy of the degraded :func:`validation_lines` and of one M3UNet pass with empty
    text (``eval --ocr-validation``): how small-print checkpoints were chosen."""
    degs = ocr_settings()[setting]
    restorer = Restorer(load_model(model_path))
    acc: dict[str, list[float]] = {}
    for i, (text, font, size) in enumerate(validation_lines(n_lines)):
        x = _to_tensor(render_line(text, font, size))
        y = deg.apply(x, degs, torch.Generator().manual_seed(7000 + i))
        out = restorer.restore(y.permute(1, 2, 0)[None], "", steps=steps, seed=i)[0].permute(2, 0, 1)
        for k, v in (("input", y), ("m3unet", out)):
            acc.setdefault(k, []).append(char_accuracy(read_line(v, threads), text))
    return {"setting": setting, "lines": n_lines, "steps": steps, "model": str(model_path or "shipped default"),
            **{k: round(100 * float(np.mean(v)), 2) for k, v in acc.items()}}


def normalise(s: str) -> str:
    """Fold full-width forms to ASCII (NFKC) and drop spaces (the recogniser often merges words)."""
    return "".join(unicodedata.normalize("NFKC", s).split())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_accuracy(read: str, truth: str) -> float:
    """1 - CER, floored at 0."""
    t = normalise(truth)
    return max(0.0, 1.0 - edit_distance(normalise(read), t) / max(1, len(t)))


@lru_cache(maxsize=1)
def _reader(threads: int = 2):
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as e:
        raise RuntimeError("the OCR test needs rapidocr-onnxruntime (see scripts/setup.sh: installed with "
                           "--no-deps plus its requirements)") from e
    return RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)


def read_line(image: torch.Tensor | np.ndarray, threads: int = 2) -> str:
    """OCR one text line (``[3, H, W]`` float tensor or ``[H, W, 3]`` uint8 RGB) with RapidOCR's recogniser."""
    if torch.is_tensor(image):
        image = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    res, _ = _reader(threads)(np.ascontiguousarray(image[..., ::-1]), use_det=False, use_cls=False)
    return " ".join(r[0] for r in res) if res else ""


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255


def classical(name: str, degs: list[deg.Degradation], x: torch.Tensor, y: torch.Tensor,
              threads: int) -> torch.Tensor | None:
    d = degs[0]
    if name == "noise":
        from .quality import baseline
        return baseline("bm3d", y, d.params["sigma"])
    if name == "blur":
        k = deg.gaussian_kernel(d.params["sigma"])
        return max((peers.wiener(y, k, b) for b in (1e-3, 1e-2, 1e-1)), key=lambda c: psnr(c, x))
    if name == "lowres":
        return peers.super_resolve("waifu2x", peers.downsample(x, d.params["scale"]), tuple(x.shape[-2:]), threads)
    return None


def evaluate_ocr(model_path: str | None = None, steps: int = DEFAULT_STEPS, n_lines: int | None = None,
                 settings: list[str] | None = None, threads: int = 2, policy=None, log=print) -> dict:
    """Run the OCR test; returns mean character accuracy per setting and method, and every reading.

    ``auto`` is what ``python -m m3unet restore`` does by default (shipped classifier and kernel-aware
    deblur; the lines are under the classifier's minimum side, so the blur estimator decides alone
    whether to deconvolve, else one blind M3UNet pass)."""
    restorer = Restorer(load_model(model_path))
    from ..auto.factory import build_auto_restorer
    auto = build_auto_restorer(restorer, model_path=model_path, policy=policy)
    lines = text_lines(n_lines)
    all_settings = ocr_settings()
    names = settings or list(all_settings)
    unknown = [n for n in names if n not in all_settings]
    if unknown:
        raise ValueError(f"unknown OCR setting(s) {unknown}; choose from {', '.join(all_settings)}")
    clean = [char_accuracy(read_line(render_line(t, f, s), threads), t) for t, f, s in lines]
    table: dict = {"clean": {"input": round(float(np.mean(clean)), 4)}}
    readings: dict = {}
    samples: dict = {}
    for sname in names:
        degs = all_settings[sname]
        acc: dict[str, list[float]] = {}
        t0 = time.time()
        for i, (text, font, size) in enumerate(lines):
            x = _to_tensor(render_line(text, font, size))
            y = deg.apply(x, degs, torch.Generator().manual_seed(5000 + i))
            img = y.permute(1, 2, 0)[None]
            outs = {"input": y}
            for n in sorted({1, steps}):
                outs[f"m3unet_{n}step"] = restorer.restore(img, "", steps=n, seed=i)[0].permute(2, 0, 1)
            text_out = restorer.restore(img, describe(degs), steps=steps, seed=i)
            outs[f"m3unet_{steps}step_text"] = text_out[0].permute(2, 0, 1)
            outs["auto"] = auto.run(img, seed=i).image[0].permute(2, 0, 1)
            if sname == "lowres":
                small = peers.downsample(x, degs[0].params["scale"])
                outs["realesrgan"] = peers.super_resolve("realesrgan", small, tuple(x.shape[-2:]), threads)
            else:
                outs["realesrgan"] = peers.restore_same_size("realesrgan", y, threads)
            c = classical(sname, degs, x, y, threads)
            if c is not None:
                outs["classical"] = c
            if i == 0:
                samples[sname] = {k: v.clone() for k, v in outs.items()}
            for k, v in outs.items():
                read = read_line(v, threads)
                acc.setdefault(k, []).append(char_accuracy(read, text))
                readings.setdefault(sname, {}).setdefault(k, []).append(read)
        table[sname] = {k: round(float(np.mean(v)), 4) for k, v in acc.items()}
        log(f"{sname}: " + ", ".join(f"{k} {v:.3f}" for k, v in table[sname].items()) + f" ({time.time() - t0:.0f}s)")
    return {"lines": [list(t) for t in lines], "steps": steps, "table": table, "readings": readings,
            "settings": {k: [{"kind": d.kind, **d.params} for d in v] for k, v in all_settings.items() if k in names},
            "samples": samples}


CLASSICAL = {"noise": "BM3D, true sigma", "blur": "Wiener, true kernel", "lowres": "waifu2x x2 twice"}


def to_markdown(result: dict) -> str:
    """Character accuracy (%) per degradation and method, and M3UNet's gap to the input and to Real-ESRGAN."""
    rows = {k: v for k, v in result["table"].items() if k != "clean"}
    cols: list[str] = []
    for row in rows.values():
        cols += [c for c in row if c not in cols]
    best = f"m3unet_{result['steps']}step"
    gaps = [best] + (["auto"] if "auto" in cols else [])
    out = ["| degradation | " + " | ".join(cols) + "".join(f" | {g} - input | {g} - realesrgan" for g in gaps) + " |",
           "|---|" + "---|" * (len(cols) + 2 * len(gaps))]
    for s, row in rows.items():
        cells = [f"{100 * row[c]:.1f}" if c in row else "-" for c in cols]
        if "classical" in row:
            cells[cols.index("classical")] += f" ({CLASSICAL[s]})"
        out.append(f"| {s} | " + " | ".join(cells) + "".join(
            f" | {100 * (row[g] - row['input']):+.1f} | {100 * (row[g] - row['realesrgan']):+.1f}" for g in gaps) + " |")
    return (f"clean lines: {100 * result['table']['clean']['input']:.1f}% character accuracy\n\n"
            + "\n".join(out) + "\n")


def plot(result: dict, path: str) -> None:
    """Grouped bars: character accuracy per degradation for each method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = {k: v for k, v in result["table"].items() if k != "clean"}
    cols: list[str] = []
    for row in rows.values():
        cols += [c for c in row if c not in cols]
    fig, ax = plt.subplots(figsize=(11, 4))
    w = 0.8 / len(cols)
    for j, c in enumerate(cols):
        xs = [i + j * w for i, r in enumerate(rows.values()) if c in r]
        ax.bar(xs, [100 * r[c] for r in rows.values() if c in r], width=w, label=c,
               color=plt.cm.tab10(j % 10))
    ax.axhline(100 * result["table"]["clean"]["input"], color="k", ls="--", lw=1, label="clean lines")
    ax.set_xticks(np.arange(len(rows)) + w * (len(cols) - 1) / 2)
    ax.set_xticklabels(list(rows))
    ax.set_ylabel("OCR character accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"RapidOCR on {len(result['lines'])} rendered text lines (higher is better)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_examples(result: dict, path: str) -> None:
    """The first line under each degradation, as each method returns it, with what RapidOCR read."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    samples = result["samples"]
    rows = [(s, m) for s in samples for m in samples[s]]
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 0.62 * len(rows) + 0.4))
    for ax, (s, m) in zip(np.atleast_1d(axes), rows):
        ax.imshow(samples[s][m].permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        read = result["readings"][s][m][0]
        ax.set_ylabel(f"{s}\n{m}", rotation=0, ha="right", va="center", fontsize=7)
        ax.set_title(f"OCR: {read!r}", fontsize=7, loc="left", pad=2)
    fig.tight_layout(h_pad=0.3)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main_args(args) -> int:
    torch.set_num_threads(args.threads)
    if getattr(args, "ocr_validation", False):
        setting = args.settings or "lowres"
        if setting not in ocr_settings():
            raise ValueError(f"--settings {setting}: --ocr-validation takes one of {', '.join(ocr_settings())}")
        r = validate_ocr(args.model, setting, args.lines or 48, args.steps or 1, args.threads)
        print(f"OCR validation ({r['lines']} lines, {setting}, {r['steps']} step, {r['model']}): "
              f"input {r['input']:.2f} %, M3UNet {r['m3unet']:.2f} %")
        return 0
    settings = args.settings.split(",") if args.settings else None
    from ..auto.policy import policy_from
    result = evaluate_ocr(args.model, args.steps or DEFAULT_STEPS, args.lines, settings, args.threads,
                          policy=policy_from(getattr(args, "policy", None)))
    print("\n" + to_markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    if args.plot:
        plot(result, args.plot)
        examples = str(Path(args.plot).with_name(Path(args.plot).stem + "_examples.png"))
        plot_examples(result, examples)
        print(f"wrote {args.plot} and {examples}")
    return 0
