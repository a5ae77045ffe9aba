#!/usr/bin/env python3
"""How much of the estimated blur should the kernel-aware deblur undo, on defocus and on down-sampling?

For every validation stress case of a single defocus or down-sampling whose defocus gate opened (the
shipped run's first step is ``blur``), the deblur (Wiener deconvolution + clean-up pass) is run with
the estimated sigma times 1.0, 0.9, 0.8 and 0.7, and with the classifier's blur / low-resolution
probabilities beside it:

    for r in centre dark; do
      .venv/bin/python -m m3unet eval --stress --split validation --region $r --json out/rs-$r-1.0.json
    done
    python scripts/deconvolution_scale_probe.py out/rs-centre-1.0.json out/rs-dark-1.0.json \\
        --json results/deconvolution-scale-validation.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m3unet.auto.deblur import BlurEstimate  # noqa: E402
from m3unet.auto.factory import build_auto_restorer  # noqa: E402
from m3unet.evaluation.stress import stress_set  # noqa: E402
from m3unet.training.data import evaluation_photos  # noqa: E402

SCALES = (1.0, 0.9, 0.8, 0.7)


def psnr(y: torch.Tensor, x: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((y.float() - x) ** 2).mean().clamp_min(1e-10)))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+", help="stress results (shipped policy) of the regions to probe")
    ap.add_argument("--data", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    auto = build_auto_restorer()
    tool = auto.pool.models["kernel-deblur"]
    rows = []
    for f in args.files:
        run = json.loads(Path(f).read_text())
        cases = stress_set(evaluation_photos(args.data, run["split"]), run["per_kind"], run["crop"], run["seed"],
                           run["region"])
        for c, row in zip(cases, run["rows"]):
            if c.name not in ("defocus", "downsampling") or not row["steps"] or row["steps"][0][0] != "blur":
                continue
            est = tool.reading(c.degraded)
            reading = auto.classifier(c.degraded.permute(1, 2, 0)[None])[0]
            r = {"region": run["region"], "photo": c.photo, "name": c.name, "sigma": round(est.sigma, 3),
                 "p_blur": round(reading.probabilities["blur"], 3), "p_lowres": round(reading.probabilities["lowres"], 3),
                 "input": round(psnr(c.degraded, c.clean), 3)}
            for s in SCALES:
                y = tool.deblur(c.degraded, BlurEstimate(est.sigma * s, est.noise, est.blocky), seed=7919)
                r[str(s)] = round(psnr(y, c.clean), 3)
            rows.append(r)
            print(r, flush=True)
    out = {"command": "scripts/deconvolution_scale_probe.py (see its docstring)", "rows": rows, "mean_gain_db": {}}
    for name in ("defocus", "downsampling"):
        rs = [r for r in rows if r["name"] == name]
        out["mean_gain_db"][name] = {str(s): round(float(np.mean([r[str(s)] - r["input"] for r in rs])), 3)
                                     for s in SCALES}
        out["mean_gain_db"][name]["cases"] = len(rs)
        out["mean_gain_db"][name]["read_blur"] = sum(r["p_blur"] >= 0.5 for r in rs)
        out["mean_gain_db"][name]["read_lowres_without_blur"] = sum(r["p_lowres"] >= 0.5 > r["p_blur"] for r in rs)
    print(out["mean_gain_db"])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
