"""``python -m m3unet eval --ocr-pages``: down-sampled text pages of every size, OCR before and after the automatic restore.

A page is one to eight lines of text stacked on white paper, in one font and size. Page sizes run
from a single small line (under the classifier's minimum side: the automatic restore's small-image
route) to a half-page of large print. Each page is down-sampled by x2, x3 or x4 (bicubic or area,
alternating) and brought back to its size, restored by the automatic restore as ``restore`` runs it,
and every line is cut out at its known place and read with RapidOCR's recogniser
(:func:`m3unet.evaluation.ocr.read_line`). Character accuracy as in :mod:`m3unet.evaluation.ocr`.

Two disjoint sets, so that the test chooses nothing: ``validation`` pages use random words of the
training vocabulary in :data:`VALIDATION_FONTS`; ``test`` pages use random words of
:data:`m3unet.evaluation.ocr.LINES` (a vocabulary of its own, numbers and punctuation included) in
:data:`TEST_FONTS`, which neither training (:data:`m3unet.training.textimage.FONT_FILES`) nor
validation uses. Every page has its own seeded words; fonts take turns page by page, and each font
is down-sampled by bicubic and by area filtering in turn.
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .ocr import LINES, char_accuracy, read_line

VALIDATION_FONTS = ("DejaVuSans-Oblique.ttf", "DejaVuSerif-Bold.ttf", "cmti10.ttf", "STIXGeneralItalic.ttf")
TEST_FONTS = ("cmtt10.ttf", "DejaVuSansMono-Oblique.ttf", "cmb10.ttf", "DejaVuSerif-BoldItalic.ttf")
# page size: (lines, font size px)
PAGE_SIZES = {"one small line": (1, 14), "three lines": (3, 20), "five lines": (5, 28), "eight lines": (8, 36)}
FACTORS = (2, 3, 4)
SEED = {"validation": 11_000_000, "test": 12_000_000}
TEST_WORDS = tuple(dict.fromkeys(w for line in LINES for w in line.split()))  # the test lines' own vocabulary


def render_page(lines: list[str], font_name: str, size: int, pad: int = 12) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Lines stacked on white (uint8 ``[H, W, 3]``) and each line's ``(top, bottom, right)`` px."""
    from ..training.textimage import render_line
    rows = [render_line(t, font_name, size, pad) for t in lines]
    w = max(r.shape[1] for r in rows)
    w += (-w) % 8
    page = np.full((sum(r.shape[0] for r in rows), w, 3), 255, np.uint8)
    boxes, y = [], 0
    for r in rows:
        page[y:y + r.shape[0], :r.shape[1]] = r
        boxes.append((y, y + r.shape[0], r.shape[1]))
        y += r.shape[0]
    return page, boxes


def downsample(x: torch.Tensor, factor: float, mode: str) -> torch.Tensor:
    """``[3, H, W]`` down-sampled by ``factor`` (``bicubic`` with antialias, or ``area``) and brought
    back to its size by bicubic interpolation."""
    h, w = x.shape[-2:]
    small = (max(1, round(h / factor)), max(1, round(w / factor)))
    lo = (F.interpolate(x[None], size=small, mode="area") if mode == "area" else
          F.interpolate(x[None], size=small, mode="bicubic", antialias=True, align_corners=False))
    return F.interpolate(lo, size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def pages(split: str, per_cell: int = 4, sizes: list[str] | None = None) -> list[dict]:
    """The pages of ``split``: ``per_cell`` per page size and factor, fonts and modes alternating;
    ``sizes``: only these page sizes (the pages kept are the same as in the full set)."""
    if split not in SEED:
        raise ValueError(f"--split must be validation or test for --ocr-pages, got {split!r}")
    unknown = [n for n in sizes or () if n not in PAGE_SIZES]
    if unknown:
        raise ValueError(f"--page-sizes: {', '.join(unknown)} unknown; choose from {', '.join(PAGE_SIZES)}")
    fonts = VALIDATION_FONTS if split == "validation" else TEST_FONTS
    out, k = [], 0
    for size_name, (n_lines, font_size) in PAGE_SIZES.items():
        for factor in FACTORS:
            for j in range(per_cell):
                rng = random.Random(SEED[split] + k)
                if split == "validation":
                    from ..training.textimage import random_line
                    lines = [random_line(rng, rng.randint(3, 5)) for _ in range(n_lines)]
                else:
                    lines = [" ".join(rng.choice(TEST_WORDS) for _ in range(rng.randint(3, 5))) for _ in range(n_lines)]
                out.append({"index": k, "size": size_name, "factor": factor,
                            "mode": ("bicubic", "area")[(j + j // len(fonts)) % 2],
                            "font": fonts[j % len(fonts)], "font_size": font_size, "lines": lines})
                k += 1
    return [p for p in out if not sizes or p["size"] in sizes]


def evaluate_pages(model_path: str | None = None, split: str = "validation", per_cell: int = 4, threads: int = 2,
                   policy=None, sizes: list[str] | None = None, log=print, classifier_path: str | None = None) -> dict:
    """OCR character accuracy of every down-sampled page and of its automatic restore, per size and factor
    (``classifier_path``: the automatic restore's classifier; None: the shipped one)."""
    from ..auto.factory import build_auto_restorer
    from ..core.weights import load_model
    from ..restore.pipeline import Restorer
    auto = build_auto_restorer(Restorer(load_model(model_path)), model_path=model_path, policy=policy,
                               classifier=classifier_path or "shipped")
    rows, t0 = [], time.time()
    for k, p in enumerate(pages(split, per_cell, sizes)):
        page, boxes = render_page(p["lines"], p["font"], p["font_size"])
        x = torch.from_numpy(page).permute(2, 0, 1).float() / 255
        y = downsample(x, p["factor"], p["mode"])
        res = auto.run(y.permute(1, 2, 0)[None], seed=p["index"])
        out = res.image[0].permute(2, 0, 1)
        acc = {"clean": [], "input": [], "auto": []}
        for (top, bottom, right), text in zip(boxes, p["lines"]):
            for name, img in (("clean", x), ("input", y), ("auto", out)):
                acc[name].append(char_accuracy(read_line(img[:, top:bottom, :right], threads), text))
        rows.append({**{k2: v for k2, v in p.items() if k2 != "lines"}, "height": int(x.shape[1]),
                     "width": int(x.shape[2]), **{n: round(float(np.mean(v)), 4) for n, v in acc.items()},
                     "steps": [(s.task, s.chosen, s.outcome) for s in res.reports[0].steps]})
        if (k + 1) % 8 == 0:
            log(f"{k + 1} pages ({time.time() - t0:.0f}s)")
    table = {}
    for size_name in PAGE_SIZES:
        for factor in FACTORS:
            rs = [r for r in rows if r["size"] == size_name and r["factor"] == factor]
            if not rs:
                continue
            table[f"{size_name} / x{factor}"] = {
                "n": len(rs), "px": f"{rs[0]['height']}x{rs[0]['width']}",
                **{n: round(100 * float(np.mean([r[n] for r in rs])), 1) for n in ("clean", "input", "auto")}}
    return {"split": split, "classifier": classifier_path or "shipped", "fonts": sorted({r["font"] for r in rows}),
            "per_cell": per_cell,
            "seconds": round(time.time() - t0), "table": table, "rows": rows}


def pages_markdown(result: dict) -> str:
    out = [f"{result['split']} pages, fonts {', '.join(result['fonts'])}; OCR character accuracy (%).", "",
           "| page / factor | pages | size (px) | clean | input | auto | auto - input |", "|---|---|---|---|---|---|---|"]
    for key, v in result["table"].items():
        out.append(f"| {key} | {v['n']} | {v['px']} | {v['clean']:.1f} | {v['input']:.1f} | {v['auto']:.1f} | "
                   f"{v['auto'] - v['input']:+.1f} |")
    return "\n".join(out) + "\n"


def main_args(args) -> int:
    from ..auto.policy import policy_from
    torch.set_num_threads(args.threads)
    result = evaluate_pages(args.model, args.split or "validation", args.per_cell, args.threads,
                            policy_from(getattr(args, "policy", None)),
                            [n.strip() for n in args.page_sizes.split(",")] if args.page_sizes else None,
                            classifier_path=getattr(args, "classifier", None))
    print("\n" + pages_markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0
