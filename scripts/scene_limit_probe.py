#!/usr/bin/env python3
"""Choose the limits of the automatic restore's haze and low-light steps on the validation and
holdout photos: ``haze_min_black_point`` (dehaze only an image whose black point is lifted, as haze
lifts it: He, Sun and Tang, CVPR 2009), ``lowlight_max_highlight`` (brighten only an image whose
highlights stay under white, as an under-exposed photo's do) and ``lowlight_min_severity`` (brighten
only a low-light reading of at least this severity, the classifier's reading of the image as given,
recorded in the stress results).

Each limit only changes a run that acts on its reading of the image as given, and then the same way
for every limit past that image's statistic (:func:`m3unet.auto.guards.black_point`,
:func:`m3unet.auto.guards.highlight`). So the cases of the stress results that ran the step, with
a statistic the most extreme limit tried would act on and the results' own limit did not, are re-run
twice with the same seeds: with the results' limit (``before``) and with the most extreme one
(``after``), every other entry the shipped policy's. A limit's effect is the sum of ``after -
before`` over the cases it acts on; the other cases do not change.

    .venv/bin/python -m m3unet eval --stress --split validation --json results/stress-validation.json  # and
    #   --region dark, --split holdout (results/stress-{validation,holdout}[-dark].json)
    python scripts/scene_limit_probe.py haze_min_black_point --json results/haze-black-point-validation-holdout.json
    python scripts/scene_limit_probe.py lowlight_max_highlight --json results/lowlight-highlight-validation-holdout.json
    python scripts/scene_limit_probe.py lowlight_min_severity --json results/lowlight-floor-validation-holdout.json

The validation photos have no clear scene read as hazy and few dark scenes read as under-exposed, so
on them a limit can mostly only cost real haze or low light; the holdout photos have such scenes
(grey, low-contrast and dark ones), so both splits together choose.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from m3unet.auto.factory import build_auto_restorer  # noqa: E402
from m3unet.auto.guards import black_point, highlight  # noqa: E402
from m3unet.auto.policy import DEFAULT_POLICY  # noqa: E402
from m3unet.core.metrics import psnr  # noqa: E402
from m3unet.core.weights import load_model  # noqa: E402
from m3unet.evaluation.stress import stress_set  # noqa: E402
from m3unet.restore.pipeline import Restorer  # noqa: E402
from m3unet.training.data import evaluation_photos  # noqa: E402

# entry -> (task, statistic(case, its result row), what the statistic is, acts(statistic, limit), limits
# tried (the most extreme last), value when off)
RULES = {
    "haze_min_black_point": ("haze", lambda c, r: black_point(c.degraded), black_point.__doc__,
                             lambda s, b: s < b, (0.05, 0.1, 0.15, 0.2, 0.25, 0.3), 0.0),
    "lowlight_max_highlight": ("lowlight", lambda c, r: highlight(c.degraded), highlight.__doc__,
                               lambda s, h: s >= h, (0.9, 0.8, 0.7, 0.6, 0.55, 0.5, 0.45, 0.4, 0.35, 0.3), 2.0),
    "lowlight_min_severity": ("lowlight", lambda c, r: r["lowlight"][1],
                              "The classifier's low-light severity of the image as given.",
                              lambda s, f: s < f, (0.2, 0.21, 0.22, 0.23, 0.25, 0.27, 0.3, 0.35, 0.4), 0.0),
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("entry", choices=sorted(RULES))
    ap.add_argument("--splits", default="validation,holdout")
    ap.add_argument("--results", default="results", help="folder of the stress results (stress-<split>[-dark].json)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task, statistic, what, acts, limits, off = RULES[args.entry]
    extreme = limits[-1]
    model, autos = load_model(None), {}

    def restorer(value: float):
        if value not in autos:
            autos[value] = build_auto_restorer(Restorer(model), classifier="shipped",
                                               policy=DEFAULT_POLICY.replace(**{args.entry: value}))
        return autos[value]

    def gain(value: float, c, k: int, p_in: float) -> float:
        out = restorer(value).run(c.degraded.permute(1, 2, 0)[None], seed=k).image[0].permute(2, 0, 1)
        return round(min(psnr(out, c.clean), 60.0) - p_in, 3)

    runs, t0 = {}, time.time()
    for split in args.splits.split(","):
        photos = evaluation_photos(args.data, split)
        for region in ("centre", "dark"):
            res = json.loads((Path(args.results) / f"stress-{split}{'-dark' if region == 'dark' else ''}.json").read_text())
            own = float(res["policy"].get(args.entry, off))
            cases = stress_set(photos, res["per_kind"], res["crop"], res["seed"], region)
            rows = []
            for k, (c, r) in enumerate(zip(cases, res["rows"])):
                assert (c.photo, c.name, c.band) == (r["photo"], r["name"], r["band"])
                if not any(task in s[0].split("+") for s in r["steps"]):
                    continue
                s = statistic(c, r)
                if acts(s, extreme) and not acts(s, own):
                    rows.append({"photo": c.photo, "name": c.name, "band": c.band, "truth": task in r["families"],
                                 "statistic": round(s, 4), "shipped": round(r["auto_psnr"] - r["input_psnr"], 3),
                                 "before": gain(own, c, k, r["input_psnr"]), "after": gain(extreme, c, k, r["input_psnr"])})
            runs[f"{split}-{region}"] = {"cases": len(res["rows"]), "rows": rows}
            print(f"{split} {region}: {len(rows)} re-run ({time.time() - t0:.0f}s)", flush=True)
    out = {"command": f"scripts/scene_limit_probe.py {args.entry} (see its docstring)", "splits": args.splits,
           "entry": args.entry, "statistic": what.split("\n")[0], "limits": {}}
    for b in limits:
        row = {}
        for name, run in runs.items():
            fired = [r for r in run["rows"] if acts(r["statistic"], b)]
            delta = [r["after"] - r["before"] for r in fired]
            row[name] = {"mean_gain_change_db": round(sum(delta) / run["cases"], 3), "cases_changed": len(fired),
                         f"{task}_cases": sum(r["truth"] for r in fired),
                         f"on_{task}_db": round(sum(d for d, r in zip(delta, fired) if r["truth"]), 2),
                         f"on_{task}_free_db": round(sum(d for d, r in zip(delta, fired) if not r["truth"]), 2)}
        row["total_change_db"] = round(sum(v[f"on_{task}_db"] + v[f"on_{task}_free_db"] for v in row.values()), 2)
        out["limits"][str(b)] = row
        print(b, json.dumps(row), flush=True)
    out["runs"] = runs
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
