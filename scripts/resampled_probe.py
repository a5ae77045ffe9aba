#!/usr/bin/env python3
"""Would a resampling guard on the defocus gate help? Measured on the validation photos.

A photo down-sampled and brought back to size has a blur the blur estimator reads as a Gaussian one,
but the Gaussian deconvolution undoes it poorly (the interpolation kernel is not a Gaussian). Its
cepstrum may show the resampling comb: a deep peak several px out, as deep along both axes. The
guard tried here keeps the defocus gate closed when the cepstrum (:func:`m3unet.auto.motion.estimate_motion`)
reads confidence >= c, symmetry >= s and length >= n.

The guard only changes a run whose defocus gate opened, and then as the gate closed would. So two
stress runs per region suffice: the defocus gate as shipped and closed (``--policy defocus_gate=False``);
for thresholds (c, s, n) a case takes the second run's result where its cepstrum passes them, else
the first run's (``confidence>=inf``: the guard off):

    for r in centre dark; do for g in True False; do
      .venv/bin/python -m m3unet eval --stress --split validation --region $r \\
          --policy defocus_gate=$g --json out/resampled-$r-$g.json
    done; done
    python scripts/resampled_probe.py out/resampled-{centre,dark}-{True,False}.json \\
        --json results/resampled-probe-validation.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m3unet.auto.motion import estimate_motion  # noqa: E402
from m3unet.evaluation.stress import stress_set  # noqa: E402
from m3unet.training.data import evaluation_photos  # noqa: E402

CONFIDENCES = (0.0, 4.0, 6.0, 8.0, 10.0, float("inf"))
SYMMETRIES = (0.2, 0.3, 0.4, 0.5, 0.6)
LENGTHS = (0.0, 5.0, 6.0, 7.0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs=4, help="stress results: centre and dark, defocus gate on and off (any order)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    runs = {}
    for f in args.files:
        r = json.loads(Path(f).read_text())
        runs[(r["region"], bool(r["policy"]["defocus_gate"]))] = r
    readings = {}
    for region in ("centre", "dark"):
        first = runs[(region, True)]
        cases = stress_set(evaluation_photos(args.data, first["split"]), first["per_kind"], first["crop"],
                           first["seed"], region)
        readings[region] = [estimate_motion(c.degraded) for c in cases]
    out = {"command": "scripts/resampled_probe.py (see its docstring)", "split": runs[("centre", True)]["split"],
           "grid": {}}
    best = None
    for c, s, n in ((c, s, n) for c in CONFIDENCES for s in SYMMETRIES for n in LENGTHS):
        gains, fired, by_kind = [], 0, {}
        for region in ("centre", "dark"):
            on, off = runs[(region, True)]["rows"], runs[(region, False)]["rows"]
            for a, b, est in zip(on, off, readings[region]):
                assert (a["photo"], a["name"], a["band"]) == (b["photo"], b["name"], b["band"])
                comb = est.confidence >= c and est.symmetry >= s and est.length >= n
                use = b if comb else a
                fired += comb and a["steps"] != b["steps"]
                g = use["auto_psnr"] - use["input_psnr"]
                gains.append(g)
                by_kind.setdefault(f"{a['name']} / {a['band']}", []).append(g)
        kinds = {k: round(float(np.mean(v)), 3) for k, v in by_kind.items()}
        row = {"mean_gain_db": round(float(np.mean(gains)), 4), "cases_changed": fired,
               "downsampling": [kinds.get(f"downsampling / {b}") for b in ("low", "mid", "high")],
               "defocus": [kinds.get(f"defocus / {b}") for b in ("low", "mid", "high")],
               "worst": min((v, k) for k, v in kinds.items())}
        key = f"confidence>={c}, symmetry>={s}, length>={n}"
        out["grid"][key] = row
        print(key, row)
        if best is None or row["mean_gain_db"] > best[1]["mean_gain_db"] + 1e-9:
            best = (key, row)
    out["best"] = best[0]
    print("best:", best)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
