"""``python -m m3unet classify``: one JSON line per image with labels, severities and a plan.

Inputs are files, folders (recursive) and globs, as for ``restore``. Every line is strict JSON: a
reading the network cannot make at the image's size (NaN) is ``null`` and listed in ``unmeasured``.
Under the classifier's minimum side the reading is not trusted, and the plan is empty with a
``note``: ``restore`` does one blind pass there instead of planning. Exit codes as ``restore``:
0 all classified, 1 some file could not be (reported on stderr), 2 a bad flag or classifier file.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

from ..core.imageio import read_image
from .batch import EXIT_FAILED, EXIT_OK, EXIT_USAGE, expand_inputs


def _clean(values: dict) -> tuple[dict, list[str]]:
    """NaN/inf -> None (JSON null), and the labels that had them."""
    out, bad = {}, []
    for k, v in values.items():
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            out[k] = None
            bad.append(k)
        else:
            out[k] = v
    return out, bad


def run(args) -> int:
    """Classify ``args.inputs``; unreadable files are reported on stderr and give exit code 1."""
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    if not 0.0 < args.threshold < 1.0:
        print(f"error: --threshold must be between 0 and 1 (exclusive); got {args.threshold}", file=sys.stderr)
        return EXIT_USAGE
    from ..auto.classifier import Classifier, load_classifier
    from ..auto.plan import plan_from_finding
    from ..auto.reading import Reader
    from ..auto.policy import DEFAULT_POLICY
    exp = expand_inputs(args.inputs, Path(".nonexistent-output-folder"), skip_outputs=False)
    clf = Classifier(load_classifier(args.classifier), threshold=args.threshold)
    reader = Reader(clf, spectral_motion=False if getattr(args, "no_spectral_motion", False) else None)
    failures = 0
    for _, why in exp.missing:
        print(f"error: {why}", file=sys.stderr)
        failures += 1
    for s in exp.sources:
        src = s.path
        try:
            image = read_image(src)
            read = clf(image[None])[0]
            finding = reader.complete(image[None], [read])[0]
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}" if str(src) in str(e) else f"error: {src}: {e}", file=sys.stderr)
            failures += 1
            continue
        d = finding.to_dict()
        labels, bad_p = _clean(d["labels"])
        severity, bad_s = _clean(d["severity"])
        unmeasured = sorted(set(bad_p) | set(bad_s))
        h, w = image.shape[:2]
        rec = {"file": str(src), "labels": labels, "severity": severity,
               "detected": [k for k in d["detected"] if k not in unmeasured]}
        if "spectral" in d:
            rec["spectral"] = d["spectral"]  # labels read from the image's spectrum, with what was read
        if "scene" in d:
            rec["scene"] = d["scene"]  # labels read but left out: the image's tones rule them out
        notes = []
        if unmeasured:
            notes.append(f"{', '.join(unmeasured)} cannot be measured on a {w}x{h} px image")
        if clf.min_side and min(h, w) < clf.min_side:
            notes.append(f"{w}x{h} px is under the {clf.min_side} px these weights were measured at: the reading is "
                         "not trusted, and restore does one blind pass instead of a plan")
            rec["plan"] = []
        else:
            # the restore acts at its policy's decision points, which may differ from the reading's
            acting = reader.with_scene(image[None], [clf.decide_at(read, DEFAULT_POLICY.act_offsets,
                                                                    DEFAULT_POLICY.detection_threshold)])[0]
            rec["plan"] = plan_from_finding(acting).to_dict()["steps"]
        if unmeasured:
            rec["unmeasured"] = unmeasured
        if notes:
            rec["note"] = "; ".join(notes)
        print(json.dumps(rec, allow_nan=False), flush=True)
    return EXIT_FAILED if failures else EXIT_OK
