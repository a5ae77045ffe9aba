"""Does each special-case rule of the automatic restore earn its place? ``python -m m3unet eval --rules``.

Every rule of the restore policy (:class:`m3unet.auto.policy.RestorePolicy`) is checked the same
way, on one split's photos (validation chooses; test only reports):

1. The default automatic restore runs over a fixed, seeded suite of cases: mixes of two and three
   degradations, every single-degradation setting of ``eval``, clean and near-clean (JPEG q90)
   photos, 64 and 96 px crops (under the classifier's minimum side) and rendered text pages (clean
   and degraded). Its report names the rules that changed what was done on each case
   (:attr:`m3unet.auto.decisions.AutoReport.rules`).
2. For each rule, the cases where it fired are restored again with the rule switched off. Where a
   rule did not fire, switching it off changes nothing, so the difference over the whole suite is
   the difference over the cases where it fired.

PSNR is capped at :data:`PSNR_CAP` (an unchanged clean image would score infinity). A rule is kept
when switching it off loses PSNR over the suite; one that never fires, or whose
removal does not lose, is a candidate to drop.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..auto.factory import build_auto_restorer
from ..auto.policy import DEFAULT_POLICY, RestorePolicy
from ..core.metrics import psnr
from ..core.weights import load_model
from ..restore.pipeline import Restorer
from ..training import synthesis as deg
from ..training.data import center_crop, evaluation_photos
from .orders import degrade, mix_instances

# Each rule, and the policy change that switches it off.
RULES_OFF: dict[str, dict] = {
    "print_guard": {"print_guard": False},
    "exposure_guard": {"exposure_guard": False},
    "hysteresis": {"keep_threshold": 1.01},
    "defocus_gate": {"defocus_gate": False},
    "small_image_routes": {"small_image_routes": False},
    "solo_specialists": {"solo_specialists": False},
    "joint_tasks": {"joint_tasks": ()},
    "prefer_margin": {"prefer_margin": 0.0},
    "retry": {"retry": False},
}
MIX_SETS = [("jpeg", "noise"), ("blur", "noise"), ("haze", "noise"), ("lowlight", "noise"), ("jpeg", "lowres"),
            ("blur", "jpeg", "noise"), ("jpeg", "motion", "noise"), ("jpeg", "lowres", "noise"),
            ("blur", "haze", "noise"), ("jpeg", "lowlight", "noise")]
SMALL_SETTINGS = ("noise25", "blur2", "jpeg15", "mix", "lowres2x")
# Rendered pages: the split decides the seeds (validation: negative seeds; test: seeds never used).
PAGE_SEEDS = {"validation": range(-1, -13, -1), "test": range(-101, -113, -1)}


@dataclass
class Case:
    """One restoration case: its group, a name, the degraded image and the clean one ([3, H, W])."""
    group: str
    name: str
    degraded: torch.Tensor
    clean: torch.Tensor


def suite(data: str | None, split: str, crop: int = 256, per_set: int = 6, seed: int = 1) -> list[Case]:
    """The seeded cases of one split (see the module doc)."""
    photos = evaluation_photos(data, split)
    ids = sorted(photos)
    cases: list[Case] = []
    for inst in mix_instances(MIX_SETS, ids, per_set, seed):
        clean = center_crop(photos[inst.photo], crop)
        cases.append(Case("mix", f"{'+'.join(inst.tasks)} {inst.photo}", degrade(clean, inst), clean))
    settings = deg.eval_settings()
    for k, pid in enumerate(ids):
        clean = center_crop(photos[pid], crop)
        for name, degs in settings.items():
            y = deg.apply(clean, degs, torch.Generator().manual_seed(1000 * seed + k))
            cases.append(Case("single", f"{name} {pid}", y, clean))
        cases.append(Case("clean", f"clean {pid}", clean, clean))
        cases.append(Case("clean", f"jpeg90 {pid}", deg.apply_one(clean, deg.make("jpeg", 0.0, quality=90)), clean))
        for side in (64, 96):
            small = center_crop(photos[pid], side)
            for name in SMALL_SETTINGS:
                y = deg.apply(small, settings[name], torch.Generator().manual_seed(2000 * seed + k))
                cases.append(Case("small", f"{name} {side}px {pid}", y, small))
    from ..training.textimage import render_page
    for s in PAGE_SEEDS[split]:
        page = torch.from_numpy(render_page(256, 256, s)[0]).permute(2, 0, 1).float() / 255
        g = torch.Generator().manual_seed(abs(s))
        variants = {"clean": [], "lowres3x": [deg.make("lowres", 0.6, scale=3.0)],
                    "blur+noise": [deg.make("blur", 0.3), deg.make("noise", 0.2)],
                    "jpeg30": [deg.make("jpeg", 0.6, quality=30)]}
        for name, degs in variants.items():
            cases.append(Case("print", f"page {s} {name}", deg.apply(page, degs, g) if degs else page, page))
    return cases


PSNR_CAP = 60.0  # dB: an image returned unchanged (clean cases) would score infinity


def _psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    return min(psnr(x, ref), PSNR_CAP)


def _restore(auto, case: Case, seed: int) -> tuple[float, list[str]]:
    res = auto.run(case.degraded.permute(1, 2, 0)[None], seed=seed)
    return _psnr(res.image[0].permute(2, 0, 1), case.clean), list(res.reports[0].rules)


def check_rules(model_path: str | None = None, data: str | None = None, split: str = "validation",
                crop: int = 256, per_set: int = 6, seed: int = 1, policy: RestorePolicy = DEFAULT_POLICY,
                rules: list[str] | None = None, log: Callable[[str], None] = print) -> dict:
    """Run the suite with ``policy`` and with each rule switched off where it fired; returns the
    per-case PSNR, which rules fired where, and the per-rule differences."""
    restorer = Restorer(load_model(model_path))
    build = lambda p: build_auto_restorer(restorer, model_path=model_path, policy=p)  # noqa: E731
    auto = build(policy)
    cases = suite(data, split, crop, per_set, seed)
    t0 = time.time()
    base, fired = [], []
    for k, case in enumerate(cases):
        v, r = _restore(auto, case, k)
        base.append(v)
        fired.append(r)
        if (k + 1) % 20 == 0:
            log(f"{k + 1}/{len(cases)} cases ({time.time() - t0:.0f}s)")
    table = {}
    for rule in rules or list(RULES_OFF):
        where = [k for k, r in enumerate(fired) if rule in r]
        off_auto = build(policy.replace(**RULES_OFF[rule]))
        off = {k: _restore(off_auto, cases[k], k)[0] for k in where}
        diffs = [base[k] - off[k] for k in where]
        groups = sorted({cases[k].group for k in where})
        table[rule] = {"fired": len(where), "of": len(cases),
                       "gain_where_fired_db": round(float(np.mean(diffs)), 3) if diffs else None,
                       "gain_over_suite_db": round(float(np.sum(diffs)) / len(cases), 4),
                       "worst_case_db": round(float(min(diffs)), 2) if diffs else None,
                       "best_case_db": round(float(max(diffs)), 2) if diffs else None,
                       "groups": {g: round(float(np.mean([base[k] - off[k] for k in where if cases[k].group == g])), 3)
                                  for g in groups},
                       "cases": {cases[k].name: round(base[k] - off[k], 3) for k in where}}
        log(f"{rule}: fired on {len(where)} of {len(cases)}; with it {table[rule]['gain_where_fired_db']} dB there "
            f"({time.time() - t0:.0f}s)")
    groups = sorted({c.group for c in cases})
    return {"split": split, "photos": sorted(evaluation_photos(data, split)), "cases": len(cases),
            "per_set": per_set, "seed": seed, "crop": crop, "seconds": round(time.time() - t0),
            "policy_changes": {k: v for k, v in policy.to_dict().items() if v != DEFAULT_POLICY.to_dict()[k]},
            "mean_psnr": {g: round(float(np.mean([b for b, c in zip(base, cases) if c.group == g])), 3) for g in groups},
            "input_psnr": {g: round(float(np.mean([_psnr(c.degraded, c.clean) for c in cases if c.group == g])), 3)
                           for g in groups},
            "rules": table, "per_case": [{"group": c.group, "name": c.name, "psnr": round(b, 3), "rules": r}
                                         for c, b, r in zip(cases, base, fired)]}


def rules_markdown(result: dict) -> str:
    rows = ["| rule | fired on | with the rule, where it fired | over the suite | worst / best case | by group |",
            "|---|---|---|---|---|---|"]
    for rule, r in result["rules"].items():
        where = "-" if r["gain_where_fired_db"] is None else f"{r['gain_where_fired_db']:+.2f} dB"
        wb = "-" if r["worst_case_db"] is None else f"{r['worst_case_db']:+.2f} / {r['best_case_db']:+.2f}"
        groups = ", ".join(f"{g} {v:+.2f}" for g, v in r["groups"].items()) or "-"
        rows.append(f"| `{rule}` | {r['fired']} of {r['of']} | {where} | {r['gain_over_suite_db']:+.3f} dB | {wb} | "
                    f"{groups} |")
    means = ", ".join(f"{g} {v:.2f}" for g, v in result["mean_psnr"].items())
    return (f"{result['split']} photos ({', '.join(result['photos'])}); {result['cases']} cases; mean PSNR of the "
            f"automatic restore by group: {means}. A positive difference means the rule helps.\n\n" + "\n".join(rows))


def main_args(args) -> int:
    from ..auto.policy import policy_from
    torch.set_num_threads(2)
    result = check_rules(args.model, args.data, args.split, args.crop or 256, args.per_set, args.mix_seed,
                         policy_from(getattr(args, "policy", None)),
                         [r for r in (args.settings or "").split(",") if r] or None)
    print("\n" + rules_markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0
