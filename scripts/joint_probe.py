"""Is one M3UNet pass told about every degradation of a mix (a joint step, ``m3unet.auto.plan.Step.also``)
as good as the best fixed order of single-task passes? On the mixes of an ``eval --auto`` JSON
(which holds every order's PSNR per mix), this runs one pass of the default model with the true
degradations' text, at 1 and 2 sampler steps, and prints mean PSNR (dB) per mix type beside the
best fixed order and the automatic restore of that JSON.

Usage::

    .venv/bin/python -m m3unet eval --auto --mix-seed 0 --json out/eval_auto_seed0.json
    .venv/bin/python scripts/joint_probe.py out/eval_auto_seed0.json

(the JSON records its mix seed; about 1 minute on one core after the eval).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from m3unet.evaluation.quality import AUTO_SETS  # noqa: E402
from m3unet.training.data import center_crop, evaluation_photos  # noqa: E402
from m3unet.core.metrics import psnr  # noqa: E402
from m3unet.evaluation.orders import degrade, mix_instances  # noqa: E402
from m3unet.restore.pipeline import Restorer  # noqa: E402
from m3unet.core.text import describe  # noqa: E402
from m3unet.core.weights import load_model  # noqa: E402


def main(path: str) -> None:
    torch.set_num_threads(1)
    ref = json.loads(Path(path).read_text())
    restorer = Restorer(load_model(None))
    photos = evaluation_photos(None)
    instances = mix_instances(AUTO_SETS, sorted(photos), ref["per_set"], ref["seed"])
    if len(instances) != len(ref["rows"]):
        raise SystemExit(f"{path} has {len(ref['rows'])} mixes, not the default {len(instances)}: run eval --auto "
                         "without --mixes and --per-set")
    rows = []
    for k, (inst, r) in enumerate(zip(instances, ref["rows"])):
        x = center_crop(photos[inst.photo], ref["crop"])
        y = degrade(x, inst)
        text = describe(inst.degs)
        joint = {n: psnr(restorer.restore(y.permute(1, 2, 0)[None], text, steps=n, seed=k)[0].permute(2, 0, 1), x)
                 for n in (1, 2)}
        rows.append({"set": r["set"], "best_fixed": r["best_fixed"], "auto": r["auto"],
                     "joint_1step": joint[1], "joint_2step": joint[2]})
    cols = ("best_fixed", "auto", "joint_1step", "joint_2step")
    print(f"mix seed {ref['seed']}, {len(rows)} mixes; PSNR dB")
    print("| mix | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
    for s in list(dict.fromkeys(r["set"] for r in rows)) + ["mean"]:
        rs = [r for r in rows if r["set"] == s or s == "mean"]
        print(f"| {s} | " + " | ".join(f"{np.mean([r[c] for r in rs]):.2f}" for c in cols) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
