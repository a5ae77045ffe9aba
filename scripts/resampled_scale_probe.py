#!/usr/bin/env python3
"""Compare stress runs that differ only in the policy's ``resampled_sigma_scale`` (validation photos).

    for r in centre dark; do for s in 1.0 0.8 0.7; do
      .venv/bin/python -m m3unet eval --stress --split validation --region $r \\
          --policy resampled_sigma_scale=$s --json out/rs-$r-$s.json
    done; done
    python scripts/resampled_scale_probe.py out/rs-*.json --json results/resampled-scale-validation.json

Prints, per scale, the mean PSNR gain over all cases of both regions, the cases whose result changed,
and the gain per kind (down-sampling and defocus by band, mixes).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+", help="stress results of both regions at each scale")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    runs: dict[float, dict[str, dict]] = {}
    for f in args.files:
        r = json.loads(Path(f).read_text())
        runs.setdefault(float(r["policy"].get("resampled_sigma_scale", 1.0)), {})[r["region"]] = r
    base = runs[1.0]
    out = {"command": "scripts/resampled_scale_probe.py (see its docstring)", "split": base["centre"]["split"],
           "scales": {}}
    for scale in sorted(runs, reverse=True):
        gains, changed, by_kind = [], 0, {}
        for region in ("centre", "dark"):
            for a, b in zip(base[region]["rows"], runs[scale][region]["rows"]):
                assert (a["photo"], a["name"], a["band"]) == (b["photo"], b["name"], b["band"])
                g = b["auto_psnr"] - b["input_psnr"]
                gains.append(g)
                changed += abs(a["auto_psnr"] - b["auto_psnr"]) > 1e-3
                key = a["name"] if a["name"] not in ("downsampling", "defocus") else f"{a['name']} / {a['band']}"
                by_kind.setdefault(key, []).append(g)
        kinds = {k: round(float(np.mean(v)), 3) for k, v in sorted(by_kind.items())}
        row = {"mean_gain_db": round(float(np.mean(gains)), 4), "cases": len(gains), "cases_changed": changed,
               "kinds": kinds}
        out["scales"][str(scale)] = row
        print(scale, {k: v for k, v in row.items() if k != "kinds"},
              {k: v for k, v in kinds.items() if k.startswith(("down", "defocus", "mix"))})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
