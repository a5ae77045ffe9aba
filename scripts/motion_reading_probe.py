"""Does the motion gate's spectral test make a better motion *reading* than the classifier alone?

For each case of the validation stress set (``--region centre|dark``): the classifier's reading (the
shipped file, its calibration), the same with "motion" added wherever the motion gate's spectral
test holds (:meth:`m3unet.auto.motion.MotionDeblur.gate_reading`: a cepstral peak deep enough, or a
shallower one whose fitted path matches the photo's spectrum), and the same except on images that
look like print (:func:`m3unet.auto.guards.looks_like_print`, as :class:`m3unet.auto.reading.Reader`
does). Prints the F1 per family of each and the cases where motion was added:

    .venv/bin/python scripts/motion_reading_probe.py --region centre
    .venv/bin/python scripts/motion_reading_probe.py --region dark
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m3unet.auto import guards  # noqa: E402
from m3unet.auto.classifier import Classifier, load_classifier  # noqa: E402
from m3unet.auto.motion import MotionDeblur  # noqa: E402
from m3unet.auto.policy import DEFAULT_POLICY  # noqa: E402
from m3unet.evaluation.stress import FAMILY_OF_LABEL, STRESS_SEED, f1_scores, stress_set  # noqa: E402
from m3unet.training.data import evaluation_photos  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--region", default="centre", choices=("centre", "dark"))
    ap.add_argument("--classifier", default=None, help="classifier file (default: the shipped one)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clf = Classifier(load_classifier(args.classifier))
    cases = stress_set(evaluation_photos(None, "validation"), 2, 256, STRESS_SEED, args.region)
    gate = MotionDeblur(None, base_balance=DEFAULT_POLICY.motion_balance)  # the reading needs no restorer
    base, every, not_print = [], [], []
    for c in cases:
        read = {FAMILY_OF_LABEL[k] for k in clf(c.degraded.permute(1, 2, 0)[None])[0].labels}
        spectral = "motion" not in read and gate.gate_reading(c.degraded) is not None
        on_print = guards.looks_like_print(c.degraded, DEFAULT_POLICY)
        base.append(read)
        every.append(read | ({"motion"} if spectral else set()))
        not_print.append(read | ({"motion"} if spectral and not on_print else set()))
        if spectral:
            print(f"  motion added: {c.photo} {c.name} (applied: {', '.join(sorted(c.families))}; "
                  f"read: {', '.join(sorted(read)) or 'nothing'}{'; looks like print' if on_print else ''})")
    print("classifier                       ", f1_scores(cases, base))
    print("with the spectral test           ", f1_scores(cases, every))
    print("with the spectral test, not print", f1_scores(cases, not_print))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
