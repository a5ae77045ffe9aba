"""Would the motion gate's spectral test make a better motion *reading* than the classifier's?

For each case of the validation stress set (``--region centre|dark``), the classifier's reading as
recorded by ``eval --stress --split validation --json FILE``, and the same reading with "motion"
added wherever the motion gate's spectral test holds
(:meth:`m3unet.auto.motion.MotionDeblur.gate_reading`: a cepstral peak deep enough, or a shallower
one whose fitted path matches the photo's spectrum). Prints the F1 per family of
both and the cases where motion was added:

    .venv/bin/python scripts/motion_reading_probe.py --stress-json results/stress-validation.json --region centre
    .venv/bin/python scripts/motion_reading_probe.py --stress-json results/stress-validation-dark.json --region dark
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m3unet.auto.motion import MotionDeblur  # noqa: E402
from m3unet.auto.policy import DEFAULT_POLICY  # noqa: E402
from m3unet.evaluation.stress import STRESS_SEED, f1_scores, stress_set  # noqa: E402
from m3unet.training.data import evaluation_photos  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stress-json", required=True, help="an eval --stress --split validation result")
    ap.add_argument("--region", default="centre", choices=("centre", "dark"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = json.loads(Path(args.stress_json).read_text())["rows"]
    cases = stress_set(evaluation_photos(None, "validation"), 2, 256, STRESS_SEED, args.region)
    if len(rows) != len(cases):
        raise SystemExit(f"{args.stress_json} holds {len(rows)} cases, the {args.region} stress set {len(cases)}: "
                         "give the result of eval --stress --split validation for that region")
    gate = MotionDeblur(None, base_balance=DEFAULT_POLICY.motion_balance)  # the reading needs no restorer
    base, hybrid = [], []
    for c, r in zip(cases, rows):
        if (c.photo, c.name) != (r["photo"], r["name"]):
            raise SystemExit(f"{args.stress_json} does not follow the stress set's order (case {c.photo} {c.name})")
        read = set(r["read"])
        base.append(read)
        hybrid.append(read | ({"motion"} if gate.gate_reading(c.degraded) is not None else set()))
        if hybrid[-1] != read:
            print(f"  motion added: {c.photo} {c.name} (applied: {', '.join(sorted(c.families))}; "
                  f"read: {', '.join(sorted(read)) or 'nothing'})")
    print("classifier        ", f1_scores(cases, base))
    print("with the gate's test", f1_scores(cases, hybrid))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
