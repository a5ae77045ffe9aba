"""Choose the motion deblur's settings on the validation photos (never the test photos).

For each validation photo (256 px centre crop) and each kind of the stress set (its ranges, a seed
other than the stress set's), it records the cepstral reading (length, angle, confidence) and, on
linear motion and camera shake, the PSNR of the input, of the Wiener deconvolution alone and of
deconvolution + the M3UNet clean-up pass for each base balance, with the straight cepstral kernel
and (``--fit``) with the bowed path fitted to the spectrum (:func:`m3unet.auto.motion.fit_path`).
Prints a summary and writes JSON:

    .venv/bin/python scripts/motion_probe.py --json results/motion-probe-validation.json
    .venv/bin/python scripts/motion_probe.py --fit --balances 0.01 --json results/motion-fit-validation.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m3unet.auto.motion import MotionDeblur, estimate_motion, fit_path  # noqa: E402
from m3unet.core.metrics import psnr  # noqa: E402
from m3unet.core.weights import load_model  # noqa: E402
from m3unet.evaluation.stress import KINDS, apply, draw  # noqa: E402
from m3unet.restore.pipeline import Restorer  # noqa: E402
from m3unet.training.data import center_crop, evaluation_photos  # noqa: E402

SEED = 7  # not the stress set's seed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-kind", type=int, default=3)
    ap.add_argument("--balances", default="0.01,0.015,0.025")
    ap.add_argument("--json", default=None)
    ap.add_argument("--split", default="validation")
    ap.add_argument("--fit", action="store_true", help="also deblur with the bowed path fitted to the spectrum")
    args = ap.parse_args()
    torch.set_num_threads(2)
    balances = [float(b) for b in args.balances.split(",")]
    tools = {b: MotionDeblur(Restorer(load_model(None)), base_balance=b) for b in balances}
    photos = evaluation_photos(None, args.split)
    gen = torch.Generator().manual_seed(SEED)
    rows = []
    for pid in sorted(photos):
        clean = center_crop(photos[pid], 256)
        cases = [("clean", None)] + [(k, draw(k, gen)) for k in KINDS for _ in range(args.per_kind)]
        for kind, a in cases:
            y = clean if a is None else apply(clean, a, gen)
            est = estimate_motion(y)
            row = {"photo": pid, "kind": kind, "params": a.params if a else {}, "length": round(est.length, 2),
                   "angle": round(est.angle, 1), "confidence": round(est.confidence, 2),
                   "noise": round(est.noise, 2), "symmetry": round(est.symmetry, 2), "input": round(psnr(y, clean), 3)}
            fit = fit_path(y, est) if args.fit and est.length >= 1.0 else None
            if fit is not None:
                row["fit"] = {"length": round(fit.length, 2), "angle": round(fit.angle, 1), "bow": fit.bow,
                              "match": round(fit.match, 3)}
            if kind in ("linear motion", "camera shake"):
                for b, tool in tools.items():
                    row[f"wiener {b}"] = round(psnr(tool.deconvolve(y, est), clean), 3)
                    row[f"full {b}"] = round(psnr(tool.deblur(y, est, seed=0), clean), 3)
                    if fit is not None:  # the balance only enters the bow's sign test
                        fit_b = fit if b == 0.01 else fit_path(y, est, b)
                        row[f"wiener fit {b}"] = round(psnr(tool._deconvolve_with(y, fit_b), clean), 3)
                        row[f"full fit {b}"] = round(psnr(tool.deblur(y, fit_b, seed=0), clean), 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\nconfidence by kind (min / median / max):")
    for kind in ["clean"] + list(KINDS):
        c = [r["confidence"] for r in rows if r["kind"] == kind]
        print(f"  {kind:18s} {min(c):6.2f} {np.median(c):6.2f} {max(c):6.2f}")
    if args.fit:
        print("\nmatch of the fitted path by kind (min / median / max):")
        for kind in ["clean"] + list(KINDS):
            m = [r["fit"]["match"] for r in rows if r["kind"] == kind and "fit" in r]
            if m:
                print(f"  {kind:18s} {min(m):6.3f} {np.median(m):6.3f} {max(m):6.3f}")
    for kind in ("linear motion", "camera shake"):
        rs = [r for r in rows if r["kind"] == kind]
        print(f"\n{kind}: mean gain over the input (dB), all / length 9-17 px")
        for key in [k for k in rs[0] if k.startswith(("wiener", "full"))]:
            mid = [r for r in rs if 9 <= r["params"]["length"] <= 17]
            print(f"  {key:14s} {np.mean([r[key] - r['input'] for r in rs]):+.2f} "
                  f"{np.mean([r[key] - r['input'] for r in mid]) if mid else float('nan'):+.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"split": args.split, "seed": SEED, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
