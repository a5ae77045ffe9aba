#!/usr/bin/env python3
"""Choose the classifier's per-label decision offsets on the validation stress set.

The classifier's heads were fitted at one decision point (probability 0.5) on training photos; on
photos it has not seen, some labels are read too readily (a dark scene with noise reads as low light)
or too rarely. This script reads every case of the validation stress set (centre and darkest crops of
the validation photos, ``m3unet.evaluation.stress``) once with the uncalibrated classifier (with
``--samples N``, also the samples ``eval-classifier --per-photo N`` reads on the validation photos: the
training ranges, clean, single, mixed and bokeh regions, pooled with the stress cases), then, per
family (noise, jpeg, lowlight, haze, motion, and *soft* for blur and lowres together), shifts the
decision point by an offset on the logit scale, ``sigmoid(logit - offset) >= 0.5``. It keeps the
offset with the best F1 averaged over +-0.3 around it (one case flipping is not a reason); zero
when zero is among the best, else the middle of the best run of offsets, so the decision sits as
far from both kinds of error as the validation cases allow; an offset that gains less than 0.005 F1
is left at zero. F1 is not the whole story: the automatic restore also reads the image after each
step, so each family's offset is checked with ``eval --stress --split validation --classifier COPY``
and against the classifier's own validation samples (``--samples``) before it goes into the shipped file
(``--families`` names the ones that passed). Test photos are never read here.

    python scripts/calibrate_classifier.py --families jpeg,lowlight,haze --json results/classifier-calibration-validation.json
    python scripts/calibrate_classifier.py --families jpeg,lowlight,haze --samples 40 --json results/classifier-calibration-validation-pooled.json
    .venv/bin/python -m m3unet set-classifier-calibration weights/classifier-default.safetensors OFFSETS
"""
from __future__ import annotations

import argparse
import json
from types import SimpleNamespace
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m3unet.auto.classifier import LABELS, Classifier, load_classifier  # noqa: E402
from m3unet.core.degradations import LABEL  # noqa: E402
from m3unet.training.classifier import validation_samples  # noqa: E402
from m3unet.evaluation.stress import FAMILIES, FAMILY_OF_LABEL, STRESS_SEED, f1_scores, stress_set  # noqa: E402
from m3unet.training.data import evaluation_photos  # noqa: E402

GRID = np.round(np.arange(-3.0, 3.0001, 0.1), 2)
MIN_F1_GAIN = 0.005  # an offset that gains less F1 than this on validation is left at 0


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def smooth(scores: np.ndarray, half: int = 3) -> np.ndarray:
    """Mean over +-``half`` grid steps (edges padded): one case flipping at one offset is not a choice."""
    padded = np.pad(scores, half, mode="edge")
    return np.convolve(padded, np.ones(2 * half + 1) / (2 * half + 1), mode="valid")


def plateau_choice(scores: np.ndarray) -> int:
    """Index into GRID: 0 if it is among the best smoothed scores, else the middle of the best run."""
    scores = smooth(scores)
    best = scores.max()
    runs, start = [], None
    for i, s in enumerate(scores):
        if s >= best - 1e-9 and start is None:
            start = i
        if (s < best - 1e-9 or i == len(scores) - 1) and start is not None:
            end = i if s >= best - 1e-9 else i - 1
            runs.append((start, end))
            start = None
    zero = int(np.argmin(np.abs(GRID)))
    if scores[zero] >= best - 1e-9:
        return zero
    a, b = max(runs, key=lambda r: r[1] - r[0])
    return (a + b) // 2


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--classifier", default=None, help="classifier file (default: the shipped one)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--per-kind", type=int, default=2)
    ap.add_argument("--families", default=",".join(FAMILIES),
                    help="families whose offsets go into the set command (default: all); every family is measured")
    ap.add_argument("--samples", type=int, default=0,
                    help="also pool eval-classifier's validation samples (this many per photo and kind: clean, "
                         "single, mixture, bokeh; seed 0) with the stress set's cases")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    chosen = [f.strip() for f in args.families.split(",") if f.strip()]
    if set(chosen) - set(FAMILIES):
        raise SystemExit(f"--families: choose among {', '.join(FAMILIES)}")
    clf = Classifier(load_classifier(args.classifier), calibrated=False)
    photos = evaluation_photos(args.data, "validation")
    cases = [c for region in ("centre", "dark") for c in stress_set(photos, args.per_kind, 256, STRESS_SEED, region)]
    logits = np.array([[logit(f.probabilities[k]) for k in LABELS]
                       for f in (clf(c.degraded.permute(1, 2, 0)[None])[0] for c in cases)])
    n_stress = len(cases)
    if args.samples:  # eval-classifier's validation samples too: the training ranges, in camera order
        extra, extra_logits = [], []
        for _, y, d in validation_samples(args.data, "validation", args.samples, 256, 0):
            extra.append(SimpleNamespace(families={FAMILY_OF_LABEL[LABEL[x.kind]] for x in d}))
            extra_logits.append([logit(clf(y.permute(1, 2, 0)[None])[0].probabilities[k]) for k in LABELS])
        cases, logits = cases + extra, np.concatenate([logits, np.array(extra_logits)])
    out = {"command": "scripts/calibrate_classifier.py " + " ".join(sys.argv[1:]), "split": "validation",
           "families_set": chosen, "samples_per_photo": args.samples,
           "regions": ["centre", "dark"], "cases": len(cases), "grid": [float(GRID[0]), float(GRID[-1]), 0.1],
           "families": {}, "offsets": {}}
    for fam in FAMILIES:
        cols = [i for i, k in enumerate(LABELS) if FAMILY_OF_LABEL.get(k) == fam]
        scores = []
        for off in GRID:
            read = (logits[:, cols] - off >= 0).any(1)
            scores.append(f1_scores(cases, [{fam} if r else set() for r in read])[fam])
        scores = np.array(scores)
        i, zero = plateau_choice(scores), int(np.argmin(np.abs(GRID)))
        if scores[i] < scores[zero] + MIN_F1_GAIN:  # not worth moving the decision
            i = zero
        off = float(GRID[i])
        out["families"][fam] = {"labels": [LABELS[c] for c in cols], "f1_uncalibrated": round(float(scores[zero]), 3),
                                "f1_calibrated": round(float(scores[i]), 3), "offset": off,
                                "best_range": [float(GRID[j]) for j in np.flatnonzero(scores >= scores.max() - 1e-9)[[0, -1]]]}
        if args.samples:  # each set's F1 at 0 and at the chosen offset
            for name, part in (("stress", slice(0, n_stress)), ("samples", slice(n_stress, None))):
                out["families"][fam][f"f1_{name}"] = [
                    f1_scores(cases[part], [{fam} if r else set() for r in (logits[part][:, cols] - o >= 0).any(1)])[fam]
                    for o in (0.0, off)]
        for c in cols:
            if off != 0.0 and fam in chosen:
                out["offsets"][LABELS[c]] = off
        print(f"{fam:9s} F1 {scores[zero]:.3f} -> {scores[i]:.3f} at offset {off:+.1f} "
              f"(best from {out['families'][fam]['best_range'][0]:+.1f} to {out['families'][fam]['best_range'][1]:+.1f})"
              + "".join(f"; {k[3:]} {v[0]:.3f} -> {v[1]:.3f}" for k, v in out["families"][fam].items()
                        if k in ("f1_stress", "f1_samples")))
    text = ",".join(f"{k}={v:g}" for k, v in out["offsets"].items())
    out["set_command"] = f".venv/bin/python -m m3unet set-classifier-calibration weights/classifier-default.safetensors '{text}'"
    print(out["set_command"])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
