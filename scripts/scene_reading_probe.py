#!/usr/bin/env python3
"""Should the reading the pack reports leave out what the restore's scene limits rule out (policy
``scene_limits_reading``)? The stress set's reading F1 with the entry off and on, on the validation
and holdout photos, centre and darkest crops (the classifier alone: no restore is run).

    python scripts/scene_reading_probe.py --json results/scene-reading-validation-holdout.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m3unet.auto.policy import DEFAULT_POLICY  # noqa: E402
from m3unet.evaluation.stress import evaluate_stress  # noqa: E402

FAMILIES = ("lowlight", "haze")


def _pooled(results: list[dict], family: str) -> float:
    """F1 of ``family`` over every case of ``results`` together."""
    tp = fp = fn = 0
    for r in results:
        for row in r["rows"]:
            truth, read = family in row["families"], family in row["read"]
            tp, fp, fn = tp + (truth and read), fp + (read and not truth), fn + (truth and not read)
    return round(2 * tp / max(1, 2 * tp + fp + fn), 3)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", default="validation,holdout")
    ap.add_argument("--data", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    out = {"command": "scripts/scene_reading_probe.py", "runs": {}}
    pooled = {False: [], True: []}
    for split in args.splits.split(","):
        for region in ("centre", "dark"):
            for on in (False, True):
                r = evaluate_stress(data=args.data, split=split, region=region, restore=False,
                                    policy=DEFAULT_POLICY.replace(scene_limits_reading=on), log=lambda _: None)
                pooled[on].append(r)
                out["runs"][f"{split}-{region}-{'on' if on else 'off'}"] = {
                    "f1": r["f1"], "clean_no_label": r["clean_no_label"], "cases": r["cases"]}
                print(split, region, "on" if on else "off", {k: r["f1"][k] for k in FAMILIES},
                      "clean", r["clean_no_label"], flush=True)
    out["pooled"] = {("on" if on else "off"): {k: _pooled(rs, k) for k in FAMILIES} for on, rs in pooled.items()}
    print("pooled", out["pooled"])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
