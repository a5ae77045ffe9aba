#!/usr/bin/env python3
"""Choose the low-light ramp (policy ``lowlight_ramp``) on the validation photos.

With a floor alone, a low-light reading of the image as given just under ``lowlight_min_severity``
leaves the image as it is and one just over it brightens in full; a dark scene read near the floor
goes either way on a hair's difference in the reading. The ramp brightens a reading between the floor
and the floor plus the ramp's width in part: the brightening step's change is scaled by the share
(severity - floor) / width. This script compares stress runs of the validation photos with several
widths (0: off, the policy's default) on both regions:

    for w in 0 0.1 0.2; do for r in centre dark; do
      .venv/bin/python -m m3unet eval --stress --split validation --region $r \\
          --policy lowlight_ramp=$w --json out/ramp-$r-$w.json
    done; done
    python scripts/lowlight_ramp_probe.py out/ramp-*.json --json results/lowlight-ramp-validation.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+", help="stress results, centre and dark, one pair per ramp width")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    runs: dict[float, dict[str, dict]] = {}
    for f in args.files:
        r = json.loads(Path(f).read_text())
        runs.setdefault(float(r["policy"].get("lowlight_ramp", 0.0)), {})[r["region"]] = r
    widths = sorted(w for w, v in runs.items() if set(v) == {"centre", "dark"})
    if 0.0 not in widths:
        raise SystemExit("need a centre and a dark run with lowlight_ramp=0 (the reference)")
    ref = runs[0.0]
    out = {"command": "scripts/lowlight_ramp_probe.py (see its docstring)", "split": ref["centre"]["split"],
           "cases": sum(len(ref[r]["rows"]) for r in ref), "widths": {}}
    for w in widths:
        gains, changed, by_kind = [], [], {}
        for region in ("centre", "dark"):
            for a, b in zip(ref[region]["rows"], runs[w][region]["rows"]):
                assert (a["photo"], a["name"], a["band"]) == (b["photo"], b["name"], b["band"])
                g = b["auto_psnr"] - b["input_psnr"]
                gains.append(g)
                by_kind.setdefault(f"{region}: {b['name']}", []).append(g)
                d = b["auto_psnr"] - a["auto_psnr"]
                if abs(d) > 1e-3:
                    changed.append({"region": region, "photo": b["photo"], "kind": b["name"], "band": b["band"],
                                    "lowlight_read": b["lowlight"], "change_db": round(d, 2)})
        kinds = {k: round(float(np.mean(v)), 3) for k, v in by_kind.items()}
        out["widths"][str(w)] = {
            "mean_gain_db": round(float(np.mean(gains)), 4), "cases_changed": len(changed),
            "low_light": [kinds.get("centre: low light"), kinds.get("dark: low light")],
            "clean": [kinds.get("centre: clean"), kinds.get("dark: clean")],
            "worst_kind": min((v, k) for k, v in kinds.items()),
            "changes": sorted(changed, key=lambda c: c["change_db"])}
        print(f"ramp {w:g}: mean {np.mean(gains):+.3f} dB over {len(gains)} cases, {len(changed)} changed; "
              f"low light centre/dark {out['widths'][str(w)]['low_light']}, clean {out['widths'][str(w)]['clean']}")
        for c in out["widths"][str(w)]["changes"]:
            print(f"    {c['region']:6s} {c['photo']:24s} {c['kind']:16s} {c['band']:5s} "
                  f"read {c['lowlight_read']} {c['change_db']:+.2f} dB")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
