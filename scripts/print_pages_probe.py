#!/usr/bin/env python3
"""PSNR of the automatic restore on the rendered text pages of the validation rules suite
(``m3unet.evaluation.rules.suite``: 12 pages x clean, x3 down-sampled, blur + noise, JPEG q30) for
restore policies given as ``--policy KEY=VALUE`` groups separated by ``--``; how the print guard's
readings (``print_unread``) were chosen together with ``eval --ocr-pages --split validation``.

    python scripts/print_pages_probe.py --json results/print-pages-validation.json \\
        default "print_unread=haze,lowlight,lowres" "print_unread=haze,lowlight,lowres,blur,motion"
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m3unet.auto.factory import build_auto_restorer  # noqa: E402
from m3unet.auto.policy import policy_from  # noqa: E402
from m3unet.core.weights import load_model  # noqa: E402
from m3unet.evaluation.rules import _psnr, suite  # noqa: E402
from m3unet.restore.pipeline import Restorer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("policies", nargs="+", help="'default' or comma-free KEY=VALUE (several: separate with ';')")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    cases = [c for c in suite(None, "validation") if c.group == "print"]
    restorer = Restorer(load_model(None))
    out = {}
    for spec in args.policies:
        policy = policy_from(None if spec == "default" else spec.split(";"))
        auto = build_auto_restorer(restorer, policy=policy)
        by = {}
        for k, c in enumerate(cases):
            y = auto.run(c.degraded.permute(1, 2, 0)[None], seed=k).image[0].permute(2, 0, 1)
            variant = c.name.split(" ", 2)[2]
            by.setdefault(variant, []).append(_psnr(y, c.clean) - _psnr(c.degraded, c.clean))
        out[spec] = {v: round(float(np.mean(g)), 2) for v, g in by.items()}
        print(spec, out[spec], flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"cases": len(cases), "gain_db": out}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
