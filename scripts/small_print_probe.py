#!/usr/bin/env python3
"""Choose the small-image routes taken on print (policy ``small_print_routes``) on validation pages.

Under the classifier's minimum side the blur estimator routes an image: the kernel-aware deblur
(``deblur``), the small-print specialist (``enlarged_print``) or one blind M3UNet pass (``blind``).
On an image that looks like print, a route not listed in ``small_print_routes`` leaves it as it is,
so its OCR accuracy is the input's. One run with every route listed therefore gives every subset:
a page keeps its restored accuracy when its route is in the subset, else its input's.

    .venv/bin/python -m m3unet eval --ocr-pages --split validation --per-cell 16 \\
        --page-sizes "one small line" --policy small_print_routes=deblur,enlarged_print,blind \\
        --json results/ocr-small-lines-validation.json
    python scripts/small_print_probe.py results/ocr-small-lines-validation.json \\
        --json results/small-print-routes-validation.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m3unet.auto.guards import looks_like_print  # noqa: E402
from m3unet.auto.policy import CHOICES  # noqa: E402
from m3unet.evaluation.ocr_pages import downsample, pages, render_page  # noqa: E402

ROUTE_OF_MODEL = {"kernel-deblur": "deblur", "m3unet-smallprint": "enlarged_print"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("result", help="eval --ocr-pages result with every route listed")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    result = json.loads(Path(args.result).read_text())
    sizes = sorted({r["size"] for r in result["rows"]})
    by_index = {p["index"]: p for p in pages(result["split"], result["per_cell"], sizes)}
    rows = []
    for r in result["rows"]:
        p = by_index[r["index"]]
        page, _ = render_page(p["lines"], p["font"], p["font_size"])
        y = downsample(torch.from_numpy(page).permute(2, 0, 1).float() / 255, p["factor"], p["mode"])
        route = ROUTE_OF_MODEL.get(r["steps"][0][1], "other") if r["steps"] else "blind"
        rows.append({**r, "route": route, "print": looks_like_print(y)})
    routes = CHOICES["small_print_routes"]
    out = {"source": args.result, "split": result["split"], "pages": len(rows),
           "routes_taken": {k: sum(r["route"] == k for r in rows) for k in routes + ("other",)},
           "print_pages": sum(r["print"] for r in rows), "subsets": {}}
    for n in range(len(routes) + 1):
        for subset in itertools.combinations(routes, n):
            per_factor, acc = {}, []
            for r in rows:
                a = r["auto"] if (r["route"] in subset or not r["print"]) else r["input"]
                acc.append(a - r["input"])
                per_factor.setdefault(r["factor"], []).append(a - r["input"])
            key = ",".join(subset) or "(none: print left as it is)"
            out["subsets"][key] = {"mean_change": round(100 * float(np.mean(acc)), 2),
                                   "per_factor": {f"x{f}": round(100 * float(np.mean(v)), 2)
                                                  for f, v in sorted(per_factor.items())}}
            print(key, out["subsets"][key])
    for k in routes:
        sel = [r["auto"] - r["input"] for r in rows if r["route"] == k]
        out[f"change_where_{k}"] = round(100 * float(np.mean(sel)), 2) if sel else None
    print({k: v for k, v in out.items() if k != "subsets"})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
