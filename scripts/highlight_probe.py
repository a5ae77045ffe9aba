#!/usr/bin/env python3
"""Choose the low-light highlight limit (policy ``lowlight_max_highlight``) on the validation photos.

An under-exposed photo leaves the top of the tonal range empty: its brightest pixels sit well under
white. A dark scene exposed as it should be (a night street, a dark room with a window) still has
highlights near white. The limit tried here leaves a low-light reading of the image as given alone
when the image's luminance at the 99.5th percentile is at least ``h``.

The rule only changes a run that acts on a low-light reading of the image as given, and then as a
floor above that reading would. So two stress runs per region suffice: the shipped policy and every
low-light reading of the image as given left alone (``lowlight_min_severity=1``). For a limit ``h`` a
case takes the second run's result when its input's highlight is at least ``h``, else the first
run's (``h`` over 1: the rule off):

    for r in centre dark; do for f in 0.2 1; do
      .venv/bin/python -m m3unet eval --stress --split validation --region $r \\
          --policy lowlight_min_severity=$f --json out/head-$r-$f.json
    done; done
    python scripts/highlight_probe.py out/head-{centre,dark}-{0.2,1}.json \\
        --json results/lowlight-highlight-validation.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m3unet.auto.guards import highlight  # noqa: E402
from m3unet.evaluation.stress import stress_set  # noqa: E402
from m3unet.training.data import evaluation_photos  # noqa: E402

LIMITS = (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 2.0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs=4, help="stress results: centre and dark, shipped floor and floor 1 (any order)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    runs = {}
    for f in args.files:
        r = json.loads(Path(f).read_text())
        runs[(r["region"], float(r["policy"]["lowlight_min_severity"]) >= 1)] = r
    highs = {}
    for region in ("centre", "dark"):
        first = runs[(region, False)]
        cases = stress_set(evaluation_photos(args.data, first["split"]), first["per_kind"], first["crop"],
                           first["seed"], region)
        highs[region] = [highlight(c.degraded) for c in cases]
    out = {"command": "scripts/highlight_probe.py (see its docstring)", "split": runs[("centre", False)]["split"],
           "statistic": "luminance at the 99.5th percentile of the image as given", "limits": {}}
    for region in ("centre", "dark"):  # what the statistic looks like where it matters
        rows = runs[(region, False)]["rows"]
        lows = [h for h, a in zip(highs[region], rows) if a["name"] == "low light"]
        acted = [h for h, a, b in zip(highs[region], rows, runs[(region, True)]["rows"]) if a["steps"] != b["steps"]
                 and a["name"] != "low light" and "low light" not in json.dumps(a["applied"])]
        out[f"{region}_low_light_cases_highlight_max"] = round(max(lows), 3)
        out[f"{region}_brightened_without_low_light_highlights"] = sorted(round(h, 3) for h in acted)
    best = None
    for h in LIMITS:
        gains, fired, by_kind = [], 0, {}
        for region in ("centre", "dark"):
            ship, alone = runs[(region, False)]["rows"], runs[(region, True)]["rows"]
            for a, b, hi in zip(ship, alone, highs[region]):
                assert (a["photo"], a["name"], a["band"]) == (b["photo"], b["name"], b["band"])
                use = b if hi >= h else a
                fired += use is b and a["steps"] != b["steps"]
                g = use["auto_psnr"] - use["input_psnr"]
                gains.append(g)
                by_kind.setdefault(f"{region}: {a['name']}", []).append(g)
        kinds = {k: round(float(np.mean(v)), 3) for k, v in by_kind.items()}
        row = {"mean_gain_db": round(float(np.mean(gains)), 4), "cases_changed": fired,
               "low_light": [kinds["centre: low light"], kinds["dark: low light"]],
               "clean": [kinds["centre: clean"], kinds["dark: clean"]],
               "mixes": [kinds["centre: mix2"], kinds["centre: mix3"], kinds["dark: mix2"], kinds["dark: mix3"]],
               "worst": min((v, k) for k, v in kinds.items())}
        out["limits"][str(h)] = row
        print(h, row)
        if best is None or row["mean_gain_db"] > best[1]["mean_gain_db"] + 1e-9:
            best = (h, row)
    out["best"] = best[0]
    print("best:", best, {k: v for k, v in out.items() if k.endswith(("max", "highlights"))})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
