#!/usr/bin/env python3
"""Choose the low-light floor (policy ``lowlight_min_severity``) on the validation photos.

The floor only changes a run whose first reading finds low light under it, and then the same way for
every floor above that severity. So two stress runs per region suffice: with the floor off (0) and
with every low-light reading of the image as given left alone (1). For a floor X, a case takes the
second run's result if its first low-light severity is under X, else the first run's.

    for r in centre dark; do for f in 0 1; do
      .venv/bin/python -m m3unet eval --stress --split validation --region $r \\
          --policy lowlight_min_severity=$f --json out/floor-$r-$f.json
    done; done
    python scripts/lowlight_floor.py out/floor-{centre,dark}-{0,1}.json --json results/lowlight-floor-validation.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

FLOORS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs=4, help="centre-0 centre-1 dark-0 dark-1 stress results (any order)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    runs = {}
    for f in args.files:
        r = json.loads(Path(f).read_text())
        floor = float(r.get("policy", {}).get("lowlight_min_severity", Path(f).stem.endswith("-1")))
        runs[(r["region"], 1 if floor >= 1 else 0)] = r
    out = {"floors": {}}
    for x in FLOORS:
        gains, worst, fired, by_kind = [], {}, 0, {}
        for region in ("centre", "dark"):
            off, alt = runs[(region, 0)]["rows"], runs[(region, 1)]["rows"]
            for a, b in zip(off, alt):
                assert (a["photo"], a["name"]) == (b["photo"], b["name"])
                p, s = a["lowlight"]
                use = b if p >= 0.5 and s < x else a
                fired += use is b
                g = use["auto_psnr"] - use["input_psnr"]
                gains.append(g)
                key = f"{region}: {a['name']}"
                by_kind.setdefault(key, []).append(g)
        out["floors"][str(x)] = {"mean_gain_db": round(float(np.mean(gains)), 3), "cases_changed": fired,
                                  "worst_kind": min((round(float(np.mean(v)), 2), k) for k, v in by_kind.items()),
                                  "low_light_gain": round(float(np.mean(by_kind["centre: low light"])), 2),
                                  "dark_clean_gain": round(float(np.mean(by_kind["dark: clean"])), 2)}
        print(x, out["floors"][str(x)])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
