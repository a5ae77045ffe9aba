#!/usr/bin/env python3
"""Two changes to the reading the pack reports, measured on the photos that choose (validation and
holdout stress sets, centre and darkest crops; with ``--samples N`` also the samples
``eval-classifier --per-photo N`` reads on the validation photos). Test photos are never read here.

``exposure``: where low light is read, read the other labels on an exposure-corrected copy, as the
automatic restore does after its brightening step: ``inverse`` undoes the classifier's training model
of under-exposure at the read severity (``y = (g x)^gamma``, g and gamma from
:func:`m3unet.training.synthesis.params_for`), ``gain`` scales the image so that its highlight
(:func:`m3unet.auto.guards.highlight`) reaches 0.9. Low light itself keeps the first reading.

``jpeg_noise``: where JPEG is read, noise counts only from a logit margin ``delta`` over its decision
point (JPEG's ringing around edges reads as noise on the crops).

``motion_soft``: where motion blur is read, the soft family (defocus, low resolution) counts only from
a logit margin ``delta`` (a motion blur is a blur: it also lowers the spectrum's high bands).

    python scripts/reading_variants_probe.py --samples 40 --json results/reading-variants-validation-holdout.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m3unet.auto.classifier import Classifier, load_classifier  # noqa: E402
from m3unet.auto.guards import highlight  # noqa: E402
from m3unet.auto.reading import Reader  # noqa: E402
from m3unet.core.degradations import LABEL  # noqa: E402
from m3unet.evaluation.stress import FAMILIES, FAMILY_OF_LABEL, STRESS_SEED, _f1, stress_set  # noqa: E402
from m3unet.training.classifier import validation_samples  # noqa: E402
from m3unet.training.data import evaluation_photos  # noqa: E402
from m3unet.training.synthesis import params_for  # noqa: E402

DELTAS = (0.0, 0.3, 0.6, 0.9, 1.2, 1.6, 2.0)


def corrected(x: torch.Tensor, severity: float, mode: str) -> torch.Tensor:
    """``[3, H, W]`` with the read under-exposure undone (``inverse``) or a gain to 0.9 (``gain``)."""
    if mode == "inverse":
        p = params_for("lowlight", severity)
        return (x.clamp(1e-6, 1) ** (1 / p["gamma"]) / p["gain"]).clamp(0, 1)
    return (x * (0.9 / max(highlight(x), 0.02))).clamp(0, 1)


def margin(finding, labels) -> float:
    """The largest logit of ``labels`` over its decision point (the reading's calibration)."""
    p = max(min(max(finding.probabilities[k], 1e-6), 1 - 1e-6) for k in labels)
    return math.log(p / (1 - p))


def families_of(labels) -> set[str]:
    return {FAMILY_OF_LABEL[k] for k in labels}


def f1_table(rows: list[dict], key: str) -> dict[str, float]:
    out = {}
    for fam in FAMILIES:
        tp = fp = fn = 0
        for r in rows:
            read, true = fam in r[key], fam in r["families"]
            tp, fp, fn = tp + (read and true), fp + (read and not true), fn + (true and not read)
        out[fam] = _f1((tp, fp, fn))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", default="validation,holdout")
    ap.add_argument("--samples", type=int, default=0)
    ap.add_argument("--data", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    reader = Reader(Classifier(load_classifier(None)))
    sets: dict[str, list[tuple[set[str], torch.Tensor]]] = {}
    for split in args.splits.split(","):
        if split == "test":
            raise SystemExit("the test photos choose nothing: leave them out of --splits")
        photos = evaluation_photos(args.data, split)
        for region in ("centre", "dark"):
            sets[f"{split}-{region}"] = [(set(c.families), c.degraded)
                                         for c in stress_set(photos, 2, 256, STRESS_SEED, region)]
    if args.samples:
        sets["samples"] = [({FAMILY_OF_LABEL[LABEL[d.kind]] for d in ds}, y)
                           for _, y, ds in validation_samples(args.data, "validation", args.samples, 256, 0)]
    out = {"command": "scripts/reading_variants_probe.py " + " ".join(sys.argv[1:]), "sets": {}}
    t0 = time.time()
    for name, cases in sets.items():
        rows = []
        for fams, x in cases:
            f = reader(x.permute(1, 2, 0)[None])[0]
            row = {"families": sorted(fams), "shipped": sorted(families_of(f.labels))}
            for mode in ("inverse", "gain"):
                row[mode] = row["shipped"]
                if "lowlight" in f.labels:
                    g = reader(corrected(x, f.severity["lowlight"], mode).permute(1, 2, 0)[None])[0]
                    row[mode] = sorted(families_of(k for k in g.labels if k != "lowlight") | {"lowlight"})
            noise, soft = margin(f, ("noise",)), margin(f, ("blur", "lowres"))
            for d in DELTAS:
                drop = "noise" in f.labels and "jpeg" in f.labels and noise < d
                row[f"jpeg_noise_{d}"] = sorted(set(row["shipped"]) - ({"noise"} if drop else set()))
                drop = "soft" in row["shipped"] and "motion" in row["shipped"] and soft < d
                row[f"motion_soft_{d}"] = sorted(set(row["shipped"]) - ({"soft"} if drop else set()))
            rows.append(row)
        keys = ["shipped", "inverse", "gain"] + [f"{v}_{d}" for v in ("jpeg_noise", "motion_soft") for d in DELTAS]
        out["sets"][name] = {"cases": len(rows), "f1": {k: f1_table(rows, k) for k in keys}}
        print(f"{name} ({len(rows)} cases, {time.time() - t0:.0f}s)", flush=True)
        for k in keys:
            print(f"  {k:16s}", out["sets"][name]["f1"][k], flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
