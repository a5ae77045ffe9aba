"""``python -m m3unet classify``: one JSON line per image with labels, severities and a plan."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from ..auto.classifier import Classifier, load_classifier
from ..auto.plan import plan_from_finding
from ..core.imageio import read_image


def run(args) -> int:
    """Classify ``args.inputs``; unreadable files are reported on stderr and give exit code 2."""
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    if not 0.0 < args.threshold < 1.0:
        raise ValueError(f"--threshold must be between 0 and 1 (exclusive); got {args.threshold}")
    clf = Classifier(load_classifier(args.classifier), threshold=args.threshold)
    failures = 0
    for name in args.inputs:
        src = Path(name)
        try:
            finding = clf(read_image(src)[None])[0]
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {src}: {e}" if str(src) not in str(e) else f"error: {e}", file=sys.stderr)
            failures += 1
            continue
        d = finding.to_dict()
        print(json.dumps({"file": str(src), "labels": d["labels"], "severity": d["severity"],
                          "detected": d["detected"], "plan": plan_from_finding(finding).to_dict()["steps"]}), flush=True)
    return 2 if failures else 0
