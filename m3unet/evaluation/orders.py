"""Measure the best ORDER of restoration steps (``python -m m3unet plan-orders``).

On held-out photos with two or three degradations at once, every order of per-task M3UNet passes
(each steered by its single-task text, :func:`m3unet.core.text.describe` of that degradation) is run
and scored by PSNR against the clean photo. Orders share prefixes, so a triple costs 3 + 6 + 6
passes, not 18. The result is a table: for every pair of tasks, the mean dB gained by doing
``a`` before ``b`` (pooled over the pairs and over the triples containing both), plus the best
order of every measured set. :mod:`m3unet.auto.plan` reads it (``m3unet/auto/plan_orders.json``); a
Markdown copy goes to ``docs/plan_orders.md``. The weights' hash is recorded: re-run the command
when the M3UNet weights change.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..training import synthesis as deg
from ..core.metrics import psnr
from ..auto.plan import ORDER_TABLE, TASKS
from ..core.text import describe

EXCLUSIVE = ({"blur", "motion"},)  # never together in a mix (as in degradation.sample)
SEVERITY_RANGE = (0.2, 0.8)


def task_sets(sizes: Sequence[int] = (2, 3)) -> list[tuple[str, ...]]:
    """All sets of 2 (and 3) tasks that can occur together, in :data:`TASKS` order."""
    out = []
    for n in sizes:
        for combo in itertools.combinations(TASKS, n):
            if not any(ex <= set(combo) for ex in EXCLUSIVE):
                out.append(combo)
    return out


def task_of(d: deg.Degradation) -> str:
    return deg.LABEL[d.kind]


@dataclass
class MixInstance:
    """One held-out test case: a photo crop and the degradations applied to it."""
    photo: str
    degs: list[deg.Degradation]
    seed: int

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(sorted(task_of(d) for d in self.degs))


def make_mix(tasks: Sequence[str], seed: int) -> list[deg.Degradation]:
    """Degradations for ``tasks`` with severities drawn in :data:`SEVERITY_RANGE` (noise: Gaussian
    or, one time in three, Poisson)."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = SEVERITY_RANGE
    degs = []
    for t in tasks:
        sev = lo + (hi - lo) * float(torch.rand((), generator=g))
        kind = t
        if t == "noise" and float(torch.rand((), generator=g)) < 1 / 3:
            kind = "poisson"
        degs.append(deg.make(kind, sev, g))
    return degs


def mix_instances(sets: Sequence[Sequence[str]], photo_ids: Sequence[str], per_set: int | dict[int, int],
                  seed: int) -> list[MixInstance]:
    """``per_set`` instances of each set, on photos taken in rotation (different photos per set)."""
    out, k = [], 0
    for si, tasks in enumerate(sets):
        n = per_set[len(tasks)] if isinstance(per_set, dict) else per_set
        for j in range(n):
            s = seed * 100_003 + si * 101 + j
            out.append(MixInstance(photo_ids[k % len(photo_ids)], make_mix(tasks, s), s))
            k += 1
    return out


def degrade(clean: torch.Tensor, inst: MixInstance) -> torch.Tensor:
    return deg.apply(clean, inst.degs, torch.Generator().manual_seed(inst.seed + 7))


def restore_orders(run: Callable[[torch.Tensor, str, str], torch.Tensor], degraded: torch.Tensor,
                   degs: Sequence[deg.Degradation], clean: torch.Tensor) -> dict[tuple[str, ...], float]:
    """PSNR of every order of single-task passes; ``run(image [3,H,W], text, task) -> image``.

    The intermediate result of every prefix is computed once (a tree of passes).
    """
    by_task = {task_of(d): d for d in degs}
    cache: dict[tuple[str, ...], torch.Tensor] = {(): degraded}

    def result(prefix: tuple[str, ...]) -> torch.Tensor:
        if prefix not in cache:
            cache[prefix] = run(result(prefix[:-1]), describe([by_task[prefix[-1]]]), prefix[-1])
        return cache[prefix]

    return {order: psnr(result(order), clean) for order in itertools.permutations(sorted(by_task))}


def m3unet_runner(restorer, seed: int = 0, steps: int | None = 1,
                  by_task: dict | None = None) -> Callable[..., torch.Tensor]:
    """``run(image, text, task="")`` with one M3UNet pass (the pipeline's Restorer); ``by_task`` maps
    a task to another Restorer (a specialist checkpoint of the pool) that runs that task's steps.
    ``steps`` None: the pool's sampler steps per task (:func:`m3unet.auto.pool.steps_for`; a blind pass: 1)."""
    from ..auto.pool import steps_for

    def run(x: torch.Tensor, text: str, task: str = "") -> torch.Tensor:
        r = (by_task or {}).get(task, restorer)
        return r.restore(x.permute(1, 2, 0)[None], text, steps=steps_for(task, steps), seed=seed)[0].permute(2, 0, 1)
    return run


def weights_hash(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pair_margins(orders: dict[tuple[str, ...], float]) -> dict[tuple[str, str], float]:
    """For each pair (a, b) with a < b: mean PSNR of orders with a before b minus b before a."""
    tasks = sorted(next(iter(orders)))
    out = {}
    for a, b in itertools.combinations(tasks, 2):
        ab = [v for o, v in orders.items() if o.index(a) < o.index(b)]
        ba = [v for o, v in orders.items() if o.index(a) > o.index(b)]
        out[(a, b)] = float(np.mean(ab) - np.mean(ba))
    return out


def summarize(records: list[dict], meta: dict) -> dict:
    """The order table: pooled pairwise margins, best order per set, and the raw instances."""
    pairs: dict[tuple[str, str], list[float]] = {}
    sets: dict[str, dict] = {}
    for r in records:
        orders = {tuple(k.split(">")): v for k, v in r["orders"].items()}
        for (a, b), m in pair_margins(orders).items():
            pairs.setdefault((a, b), []).append(m)
        key = "+".join(r["tasks"])
        s = sets.setdefault(key, {"n": 0, "orders": {}})
        s["n"] += 1
        for o, v in r["orders"].items():
            s["orders"].setdefault(o, []).append(v)
    pairwise = {}
    for (a, b), ms in sorted(pairs.items()):
        m = float(np.mean(ms))
        first, second, m = (a, b, m) if m >= 0 else (b, a, -m)
        pairwise[f"{first}>{second}"] = {"margin_db": round(m, 3), "n": len(ms),
                                         "wins": sum(1 for x in ms if (x >= 0) == (first == a)),
                                         "std_db": round(float(np.std(ms)), 3)}
    for s in sets.values():
        s["orders"] = {o: round(float(np.mean(v)), 3) for o, v in s["orders"].items()}
        s["best"] = max(s["orders"], key=s["orders"].get).split(">")
        s["spread_db"] = round(max(s["orders"].values()) - min(s["orders"].values()), 3)
    return {**meta, "pairwise": pairwise, "sets": sets, "instances": records}


def measure(model_path: str | None = None, data: str | None = None, split: str = "validation", crop: int = 256,
            per_set: dict[int, int] | None = None, seed: int = 0, log=print) -> dict:
    """Run the measurement on the held-out photos; returns the order table (see :func:`summarize`)."""
    from ..auto.pool import describe_steps
    from ..training.data import center_crop, evaluation_photos
    from ..restore.pipeline import Restorer
    from ..core.weights import DEFAULT_WEIGHTS, load_model

    per_set = per_set or {2: 3, 3: 2}
    path = Path(model_path) if model_path else DEFAULT_WEIGHTS
    restorer = Restorer(load_model(path))
    photos = evaluation_photos(data, split)
    ids = sorted(photos)
    sets = task_sets(sorted(per_set))
    instances = mix_instances(sets, ids, per_set, seed)
    run = m3unet_runner(restorer, steps=None)  # the automatic restore's sampler steps per task
    records, t0 = [], time.time()
    for i, inst in enumerate(instances):
        clean = center_crop(photos[inst.photo], crop)
        y = degrade(clean, inst)
        orders = restore_orders(run, y, inst.degs, clean)
        records.append({"tasks": list(inst.tasks), "photo": inst.photo, "seed": inst.seed,
                        "degradations": [{"kind": d.kind, "severity": round(d.severity, 3)} for d in inst.degs],
                        "input_psnr": round(psnr(y, clean), 3),
                        "orders": {">".join(o): round(v, 3) for o, v in orders.items()}})
        if log and (i + 1) % 10 == 0:
            log(f"{i + 1}/{len(instances)} mixes ({time.time() - t0:.0f}s)")
    meta = {"version": 1, "weights_file": path.name, "weights_sha256": weights_hash(path),
            "photos": ids, "crop": crop, "per_set": {str(k): v for k, v in per_set.items()}, "seed": seed,
            "sampler_steps": describe_steps(None),
            "seconds": round(time.time() - t0),
            "command": f"python -m m3unet plan-orders --crop {crop} --pairs {per_set.get(2, 0)} "
                       f"--triples {per_set.get(3, 0)} --seed {seed}"}
    return summarize(records, meta)


def to_markdown(table: dict) -> str:
    """Human-readable copy of the order table (docs/plan_orders.md)."""
    from ..auto.plan import OrderTable, order_tasks
    ot = OrderTable.from_dict(table)
    lines = [
        "# Measured order of restoration steps",
        "",
        "Generated by `" + table["command"] + "` (" + str(table["seconds"]) + " s); do not edit by hand.",
        "The planner (`m3unet/auto/plan.py`) reads the same numbers from `m3unet/auto/plan_orders.json`.",
        "",
        f"- M3UNet weights: `{table['weights_file']}`, sha256 `{table['weights_sha256']}`",
        f"- held-out photos ({len(table['photos'])}): {', '.join(table['photos'])}; centre crops "
        f"{table['crop']} px; severities uniform in {list(SEVERITY_RANGE)}",
        f"- each pair of tasks on {table['per_set'].get('2', 0)} photos, each triple on "
        f"{table['per_set'].get('3', 0)}; every order of single-task M3UNet passes "
        f"(sampler steps: {table['sampler_steps']}; text = the canonical single-task restoration text)",
        "",
        "## Pairwise preferences",
        "",
        "`a > b`: doing *a* before *b* gains this many dB of PSNR on average (over every measured",
        "mix containing both; in a triple, the mean of the orders with a before b minus the others).",
        "*wins*: in how many of the *n* mixes *a* first was at least as good.",
        "",
        "| order | gain (dB) | wins / n | std (dB) |",
        "|---|---|---|---|",
    ]
    for k, v in sorted(table["pairwise"].items(), key=lambda kv: -kv[1]["margin_db"]):
        lines.append(f"| {k.replace('>', ' > ')} | {v['margin_db']:+.3f} | {v['wins']} / {v['n']} | {v['std_db']:.3f} |")
    lines += ["", "## Best order per set (mean PSNR over its mixes) and the planner's choice", "",
              "| tasks | n | best measured order | PSNR best / worst (dB) | planner's order | planner's PSNR (dB) |",
              "|---|---|---|---|---|---|"]
    agree, loss = 0, []
    for key, s in sorted(table["sets"].items(), key=lambda kv: (len(kv[0].split("+")), kv[0])):
        planned = ">".join(order_tasks(key.split("+"), ot))
        pv = s["orders"][planned]
        best = max(s["orders"].values())
        agree += planned == ">".join(s["best"])
        loss.append(best - pv)
        lines.append(f"| {key} | {s['n']} | {' > '.join(s['best'])} | {best:.2f} / {min(s['orders'].values()):.2f} | "
                     f"{planned.replace('>', ' > ')} | {pv:.2f} |")
    lines += ["", f"The planner picks the measured best order in {agree} of {len(table['sets'])} sets; "
              f"mean shortfall {np.mean(loss):.3f} dB, worst {max(loss):.3f} dB (on the same mixes it was "
              "learned from; `python -m m3unet eval --auto` tests it on other mixes).", ""]
    return "\n".join(lines)


def main_args(args) -> int:
    torch.set_num_threads(max(1, int(args.threads)))
    per_set = {2: args.pairs, 3: args.triples}
    per_set = {k: v for k, v in per_set.items() if v > 0}
    if not per_set:
        raise ValueError("--pairs and --triples are both 0: nothing to measure")
    table = measure(args.model, args.data, "validation", args.crop, per_set, args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table, indent=1) + "\n")
    md = to_markdown(table)
    if args.md:
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(md)
    print(md)
    print(f"wrote {out}" + (f" and {args.md}" if args.md else ""))
    return 0


DEFAULT_OUT = ORDER_TABLE
DEFAULT_MD = Path(__file__).resolve().parents[2] / "docs" / "plan_orders.md"
