"""``python -m m3unet restore``: restore image files into a folder (same names, PNG).

``--mode auto`` (default): the automatic restore of :mod:`m3unet.auto.restorer` (classify, plan,
best pool model per step, roll back what does not help), printing its report per image.
``--mode single`` (or any ``--text``): exactly one M3UNet pass steered by ``--text``.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from ..core.control import make_control
from ..core.imageio import read_image, side_by_side, write_image
from ..auto.factory import build_auto_restorer
from ..auto.policy import policy_from
from ..auto.restorer import DEFAULT_BUDGET, SHIPPED_CLASSIFIER, AutoProgress, AutoRestorer
from ..core.metrics import psnr
from ..restore.pipeline import DEFAULT_STEPS, DEFAULT_TILE, Progress, Restorer
from ..auto.plan import Plan, PlanError
from ..auto.pool import load_pool_model, parse_pool_arg
from ..core.weights import load_model


class _Bar:
    """A one-line text progress bar on stderr."""

    def __init__(self, label: str):
        self.label = label
        self.t0 = time.time()

    def __call__(self, p: Progress) -> None:
        n = int(30 * p.done / p.total)
        sys.stderr.write(f"\r{self.label} [{'#' * n}{'.' * (30 - n)}] {p.done}/{p.total} "
                         f"{time.time() - self.t0:.1f}s")
        if p.done == p.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


class _AutoBar:
    """Progress of the automatic restore: model runs done / planned and the current step."""

    def __init__(self, label: str):
        self.label = label
        self.t0 = time.time()
        self.last = (-1, -1)

    def __call__(self, p: AutoProgress) -> None:
        if (p.done, p.total) == self.last:
            return
        self.last = (p.done, p.total)
        sys.stderr.write(f"\r{self.label} [{p.done:.1f}/{p.total:.0f} model runs] {p.message[:50]:<50} "
                         f"{time.time() - self.t0:.1f}s")
        sys.stderr.flush()


def _auto_restorer(args, restorer: Restorer) -> AutoRestorer:
    """The automatic restorer of ``--mode auto``: classifier, pool (``--pool``), policy (``--policy``)."""
    models = []
    for arg in args.pool:
        file, tasks = parse_pool_arg(arg)
        models.append(load_pool_model(file, tasks))
    auto = build_auto_restorer(restorer, model_path=getattr(args, "model", None),
                               classifier=args.classifier or "shipped", pool_models=models,
                               kernel_deblur=not getattr(args, "no_kernel_deblur", False),
                               specialists=not getattr(args, "no_specialists", False), steps=args.steps,
                               tile=args.tile or DEFAULT_TILE, policy=policy_from(getattr(args, "policy", None)))
    if auto.classifier is None:
        print(f"note: no DegradationClassifier weights at {SHIPPED_CLASSIFIER}; restoring blind "
              "(one M3UNet pass, empty text)", file=sys.stderr)
    return auto


def _read_plan(arg: str | None) -> Plan | None:
    """``--plan``: JSON text (starts with ``[`` or ``{``) or the path of a .json file."""
    if not arg:
        return None
    if arg.strip()[:1] in ("[", "{"):
        return Plan.from_json(arg)
    path = Path(arg)
    if not path.is_file():
        raise PlanError(f"--plan {arg!r}: no such file, and not JSON; give a .json file or JSON text")
    return Plan.from_json(path.read_text())


def run(args) -> int:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    restorer = Restorer(load_model(args.model))
    steps = args.steps or DEFAULT_STEPS
    text = args.text or ""
    auto = None
    if args.mode == "auto" and args.text is None:
        auto = _auto_restorer(args, restorer)
        plan = _read_plan(args.plan)
        budget = args.budget or DEFAULT_BUDGET
    elif any((args.plan, args.pool, args.budget, args.upscale, args.classifier, args.report_json,
              getattr(args, "policy", None))):
        raise ValueError("--plan, --pool, --budget, --upscale, --classifier, --report-json and --policy belong to "
                         "the automatic mode; drop --text / --mode single to use them")
    reports = open(args.report_json, "w") if (auto is not None and args.report_json) else None
    failures = 0
    for name in args.inputs:
        src = Path(name)
        try:
            image = read_image(src)
        except (FileNotFoundError, ValueError) as e:
            print(f"skipped {src}: {e}", file=sys.stderr)
            failures += 1
            continue
        t0 = time.time()
        try:
            if auto is not None:
                result = auto.run(image[None], plan=plan, budget=budget, seed=args.seed, upscale=args.upscale,
                                  progress=_AutoBar(src.name))
                sys.stderr.write("\n")
                restored = result.image[0]
                print(f"{src}:\n  " + result.text().replace("\n", "\n  "))
                if reports is not None:
                    reports.write(json.dumps({"file": str(src), **result.reports[0].to_dict()}) + "\n")
            else:
                restored = restorer.restore(image[None], text=text, steps=steps, seed=args.seed, eta=args.eta,
                                            control=make_control(args.strength), tile=args.tile or DEFAULT_TILE,
                                            progress=_Bar(src.name))[0]
        except ValueError as e:
            print(f"skipped {src}: {e}", file=sys.stderr)
            failures += 1
            continue
        dst = out / (src.stem + ".png")
        write_image(dst, restored)
        how = "automatic" if auto is not None else f"{steps} steps"
        msg = f"{src} -> {dst} ({image.shape[1]}x{image.shape[0]}, {how}, {time.time() - t0:.1f}s)"
        if getattr(args, "reference", None):
            ref = read_image(args.reference)
            if ref.shape != image.shape or restored.shape != image.shape:
                print(f"--reference {args.reference} has shape {tuple(ref.shape)}, not {tuple(image.shape)}",
                      file=sys.stderr)
            else:
                f = lambda x: x.float().permute(2, 0, 1) / 255  # noqa: E731
                msg += f"; PSNR before {psnr(f(image), f(ref)):.2f} dB, after {psnr(f(restored), f(ref)):.2f} dB"
        if args.before_after:
            ba = out / (src.stem + "_before_after.png")
            before = image
            if before.shape[:2] != restored.shape[:2]:  # --upscale: show the input at the output size
                before = torch.nn.functional.interpolate(image.permute(2, 0, 1)[None], size=restored.shape[:2],
                                                         mode="nearest")[0].permute(1, 2, 0)
            write_image(ba, side_by_side(before, restored))
            msg += f"; comparison {ba}"
        print(msg)
    if reports is not None:
        reports.close()
    return 1 if failures else 0
