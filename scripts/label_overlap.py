"""How far apart are the blur, motion and low-resolution labels as the synthesis makes them?

For each held-out photo (256 px centre crop, 8-bit) and each severity 0, 0.1, ..., 1 of one of the
three kinds, the degraded image is compared with the same photo degraded by each *other* kind at
every severity of a fine grid, and the closest one is kept (highest PSNR). A pair of images over
about 40 dB apart differ by under 1 % of the range per pixel on average: nearly the same pixels
carrying different labels, which no classifier can tell apart reliably (the 8-bit rounding alone is
about 59 dB). Also printed: how far each degraded image is from the clean photo (a label on an image
that is nearly clean).

    .venv/bin/python scripts/label_overlap.py [--json results/label-overlap.json]

Why the classifier's F1 on single blur / motion / lowres stays under 0.95: see docs/classifier.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m3unet.training import synthesis as deg  # noqa: E402
from m3unet.training.classifier import quantise  # noqa: E402
from m3unet.training.data import center_crop, evaluation_photos  # noqa: E402
from m3unet.core.metrics import psnr  # noqa: E402

KINDS = ("blur", "motion", "lowres")
REPORT = [round(0.1 * i, 1) for i in range(11)]
GRID = [i / 40 for i in range(41)]


def degraded(x: torch.Tensor, kind: str, s: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)  # the same motion path for every severity of a photo
    return quantise(deg.apply(x, [deg.make(kind, s, g)], g))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    photos = evaluation_photos(args.data)
    rows = []
    for n, pid in enumerate(sorted(photos)):
        x = center_crop(photos[pid], 256)  # 8-bit values already
        grid = {k: [degraded(x, k, s, n) for s in GRID] for k in KINDS}
        for kind in KINDS:
            for s in REPORT:
                y = degraded(x, kind, s, n)
                near = {o: max(psnr(y, z) for z in grid[o]) for o in KINDS if o != kind}
                other = max(near, key=near.get)
                rows.append({"photo": pid, "kind": kind, "severity": s, "to_clean": psnr(y, x),
                             "nearest_other": other, "nearest_other_psnr": near[other]})
    lines = ["| kind | severity | PSNR to clean | PSNR to the nearest other label | share >= 40 dB | share >= 35 dB |",
             "|---|---|---|---|---|---|"]
    summary = {}
    for kind in KINDS:
        for s in REPORT:
            rs = [r for r in rows if r["kind"] == kind and r["severity"] == s]
            v = [r["nearest_other_psnr"] for r in rs]
            c = [r["to_clean"] for r in rs]
            others = sorted({r["nearest_other"] for r in rs})
            summary[f"{kind}@{s}"] = {"to_clean": sum(c) / len(c), "nearest_other": sum(v) / len(v),
                                     "share_40": sum(p >= 40 for p in v) / len(v),
                                     "share_35": sum(p >= 35 for p in v) / len(v), "other_kinds": others}
            m = summary[f"{kind}@{s}"]
            lines.append(f"| {kind} | {s:.1f} | {m['to_clean']:.1f} | {m['nearest_other']:.1f} ({'/'.join(others)}) "
                         f"| {m['share_40']:.2f} | {m['share_35']:.2f} |")
    for kind in KINDS:
        rs = [r for r in rows if r["kind"] == kind]
        lines.append(f"| {kind} | all | | | {sum(r['nearest_other_psnr'] >= 40 for r in rs) / len(rs):.2f} "
                     f"| {sum(r['nearest_other_psnr'] >= 35 for r in rs) / len(rs):.2f} |")
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
