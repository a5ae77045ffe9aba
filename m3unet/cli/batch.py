"""Batch restore: files, folders and globs into an output tree, never losing a file.

What :func:`plan_jobs` and the engines guarantee (docs/batch.md is the user's version):

* **Inputs**: files, folders (recursive; the tree is mirrored into the output folder) and globs
  (``'scans/**/*.tif'``; mirrored below the glob's fixed leading folders). Folders and globs take
  the files Pillow reads by their extension; hidden files and folders are left out, and so is the
  output folder where it lies inside an input folder, and every file that a restore log
  (``restore-log.jsonl``) in the output folder or in an input's folder or above lists as an output.
* **Names**: ``NAME.EXT`` becomes ``NAME.png``. When two sources would get the same name (``x.png``
  and ``x.jpg``), or an output would take the name of an input file, each of them keeps its
  extension: ``x.png.png``, ``x.jpg.png``; a name still taken gets ``~2``, ``~3``... before
  ``.png`` (in input order). Names are compared case-insensitively.
* **Safety**: an output folder that holds inputs is refused unless ``--allow-input-folder``; an
  input is never written over; every output is written to a temporary file and renamed into place
  (:func:`m3unet.core.imageio.write_image`), so an output that exists is complete.
* **Resume**: an output that exists is skipped (kept) unless ``--overwrite``: a killed or stopped
  run, run again, does only what is left.
* **Log**: one JSON line per image (``source``, ``output``, ``status`` ok / skipped / failed,
  ``error``, ``plan``, ``seconds``, ...) appended to ``OUT/restore-log.jsonl`` (``--log``).
* **Failures**: one image's failure is logged and printed; the batch goes on; exit code 1 if any
  failed (2: a usage error before any work; 130: stopped by Ctrl-C).
"""
from __future__ import annotations

import glob
import json
import math
import os
import resource
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import torch
from PIL import Image

from ..core.imageio import (LoadedImage, OutputExistsError, encode_png, is_complete_png, load_image,
                            remove_stale_partials, side_by_side, write_bytes_atomic)

LOG_NAME = "restore-log.jsonl"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_NOT_INPUTS = {".eps", ".ps", ".pdf", ".xpm"}  # registered with Pillow, but not photos to restore


class UsageError(ValueError):
    """A command line that cannot run (bad flag, refused output folder): exit code 2, nothing done."""


def image_suffixes() -> set[str]:
    """File extensions (lower case, with the dot) that folder and glob inputs take: those Pillow opens."""
    Image.init()
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN} - _NOT_INPUTS


# ------------------------------------------------------------------ inputs and output names
@dataclass
class Source:
    """One input file and where its output goes, relative to the output folder (suffix not yet chosen)."""
    path: Path
    rel: PurePath


@dataclass
class Job:
    """One image to restore: ``source`` -> ``output`` (and the before/after ``comparison``, if asked)."""
    source: str
    output: str
    comparison: str | None = None


@dataclass
class Expansion:
    sources: list[Source]
    missing: list[tuple[str, str]]  # (input, why): inputs that give no image (reported as failed)
    folders: list[Path]  # folders the inputs were read from (for the output-folder check)
    notes: list[str]


def _has_magic(spec: str) -> bool:
    return any(c in spec for c in "*?[")


def _glob_base(spec: str) -> Path:
    parts = PurePath(spec).parts
    fixed = []
    for p in parts:
        if _has_magic(p):
            break
        fixed.append(p)
    return Path(*fixed) if fixed else Path(".")


def _listed_outputs(log: Path) -> set[Path]:
    """Outputs a restore log says were written (not to be read back as inputs); none if it is absent."""
    found: set[Path] = set()
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                for key in ("output", "comparison"):
                    if isinstance(rec, dict) and rec.get(key):
                        found.add(Path(rec[key]).resolve())
    except OSError:
        pass
    return found


def _walk(folder: Path, exclude: Path | None, suffixes: set[str]):
    """Image files under ``folder`` (sorted, recursive, hidden names and ``exclude``'s subtree left out)."""
    for root, dirs, files in os.walk(folder):
        rootp = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (exclude is None or (rootp / d).resolve() != exclude))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in suffixes:
                yield rootp / name


def expand_inputs(specs: list[str], out: Path, skip_outputs: bool = True, logs: tuple[Path, ...] = ()) -> Expansion:
    """Files, folders and globs -> :class:`Source` list (input order, duplicates removed).

    ``skip_outputs``: folders and globs leave out the files a restore log lists as outputs (the
    log of ``out``, those of ``logs`` and any ``restore-log.jsonl`` in a found file's folder or
    above); a file named on the command line is always taken.
    """
    suffixes = image_suffixes()
    out_r = out.resolve()
    written: set[Path] = set()
    logs_read: set[Path] = set()
    if skip_outputs:
        for log in (out / LOG_NAME, *logs):
            written.update(_listed_outputs(Path(log)))
        logs_read.add(out_r)
    sources: list[Source] = []
    seen: set[Path] = set()
    missing: list[tuple[str, str]] = []
    folders, notes = [], []

    def add(path: Path, rel: PurePath, explicit: bool = False) -> bool:
        r = path.resolve()
        if skip_outputs and not explicit and r.parent not in logs_read:
            for folder in (r.parent, *r.parent.parents):  # a folder that is (or was) an output folder
                if folder not in logs_read and (folder / LOG_NAME).is_file():
                    written.update(_listed_outputs(folder / LOG_NAME))
                logs_read.add(folder)
        if r in seen or (not explicit and r in written):
            return False
        seen.add(r)
        sources.append(Source(path, rel))
        return True

    def add_tree(folder: Path, base: Path) -> int:
        fr = folder.resolve()
        folders.append(fr)
        exclude = out_r if out_r != fr and out_r.is_relative_to(fr) else None
        if exclude is not None:
            notes.append(f"the output folder {out} is inside the input folder {folder}: files under it are not "
                         "read as inputs")
        return sum(add(f, f.relative_to(base)) for f in _walk(folder, exclude, suffixes))

    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            if not add_tree(p, p):
                missing.append((spec, f"{spec}: no image files in this folder (or only outputs of an earlier restore)"))
        elif p.is_file():
            add(p, PurePath(p.name), explicit=True)
        elif _has_magic(spec):
            base = _glob_base(spec)
            found = 0
            for m in sorted(glob.glob(spec, recursive=True)):
                mp = Path(m)
                if any(part.startswith(".") for part in mp.relative_to(base).parts):
                    continue
                if mp.is_dir():
                    found += add_tree(mp, base)
                elif mp.is_file() and mp.suffix.lower() in suffixes:
                    found += add(mp, mp.relative_to(base))
            if not found:
                missing.append((spec, f"{spec}: no image file matches this pattern"))
        else:
            missing.append((spec, f"{spec}: no such image file, folder or matching glob"))
    return Expansion(sources, missing, folders, notes)


def _key(p: PurePath) -> str:
    return str(p).casefold()


def assign_outputs(sources: list[Source], out: Path, before_after: bool = False) -> list[Job]:
    """Output names by the naming rule (module docstring): ``NAME.png``; on a clash the source's
    extension is kept (``NAME.EXT.png``); then ``~2``, ``~3``... Inputs' own paths are never used."""
    out_r = out.resolve()
    inputs = {_key(s.path.resolve()) for s in sources}

    def taken_by_input(rel: PurePath) -> bool:
        return _key(out_r / rel) in inputs

    plain = [s.rel.with_name(s.rel.stem + ".png") if s.rel.suffix else s.rel.with_name(s.rel.name + ".png")
             for s in sources]
    counts: dict[str, int] = {}
    for rel in plain:
        counts[_key(rel)] = counts.get(_key(rel), 0) + 1
    used: set[str] = set()
    names: list[PurePath | None] = [None] * len(sources)
    for i, rel in enumerate(plain):  # first the names nobody else wants
        if counts[_key(rel)] == 1 and not taken_by_input(rel):
            names[i] = rel
            used.add(_key(rel))
    for i, s in enumerate(sources):  # then the clashing ones: extension kept, then ~N
        if names[i] is not None:
            continue
        stem = s.rel.name
        cand, n = s.rel.with_name(stem + ".png"), 1
        while _key(cand) in used or taken_by_input(cand) or (_key(cand) in counts and cand != plain[i]):
            n += 1
            cand = s.rel.with_name(f"{stem}~{n}.png")
        names[i] = cand
        used.add(_key(cand))
    jobs = []
    for s, rel in zip(sources, names):
        comparison = None
        if before_after:
            c, n = rel.with_name(rel.stem + "_before_after.png"), 1
            while _key(c) in used or taken_by_input(c):
                n += 1
                c = rel.with_name(f"{rel.stem}_before_after~{n}.png")
            used.add(_key(c))
            comparison = str(out / c)
        jobs.append(Job(str(s.path), str(out / rel), comparison))
    return jobs


def check_output_folder(out: Path, expansion: Expansion, allow_input_folder: bool) -> None:
    """Refuse an output folder that is an input folder (one given, or one holding an input file)."""
    if allow_input_folder:
        return
    out_r = out.resolve()
    holders = {s.path.resolve().parent: s.path for s in expansion.sources}
    if out_r in set(expansion.folders) or out_r in holders:
        example = holders.get(out_r)
        held = f" (it holds {example})" if example is not None else ""
        raise UsageError(f"the output folder {out} is an input folder{held}: choose another -o, or add "
                         "--allow-input-folder to write next to the inputs (an input is still never replaced: a "
                         "clashing name keeps its extension, e.g. x.png -> x.png.png)")


def plan_jobs(specs: list[str], out: Path, allow_input_folder: bool = False, before_after: bool = False,
              logs: tuple[Path, ...] = ()) -> tuple[list[Job], list[tuple[str, str]], list[str]]:
    """Inputs -> (jobs, (input, why) of inputs that give no image, notes); raises :class:`UsageError`
    for a refused output folder. ``logs``: further restore logs whose outputs are not inputs."""
    exp = expand_inputs(specs, out, logs=logs)
    check_output_folder(out, exp, allow_input_folder)
    return assign_outputs(exp.sources, out, before_after), exp.missing, exp.notes


def output_state(path: str | Path) -> str:
    """``missing``, ``complete`` (a whole PNG: a finished output), ``incomplete`` or ``not a file``."""
    p = Path(path)
    if not os.path.lexists(p):
        return "missing"
    if not p.is_file():
        return "not a file"
    return "complete" if is_complete_png(p) else "incomplete"


# ------------------------------------------------------------------ settings, checked once
@dataclass
class Settings:
    """Everything a worker needs to restore one image (plain values: sent to Ray workers as is)."""
    mode: str = "auto"  # "auto" or "single"
    text: str | None = None
    steps: int | None = None
    seed: int = 0
    eta: float = 0.0
    strength: float = 1.0
    model: str | None = None
    tile: int | None = None
    budget: int | None = None
    plan: str | None = None  # JSON text of the plan
    pool: list[str] = field(default_factory=list)
    classifier: str | None = None
    no_kernel_deblur: bool = False
    no_specialists: bool = False
    upscale: bool = False
    policy: list[str] = field(default_factory=list)
    reference: str | None = None
    overwrite: bool = False
    threads: int | None = None
    report: bool = False  # keep each automatic report in the record (--report-json)

    @property
    def auto(self) -> bool:
        return self.mode == "auto" and self.text is None


def _abs(p: str | None) -> str | None:
    return str(Path(p).resolve()) if p else None


def settings_from_args(args) -> Settings:
    """Check every flag of ``restore`` (no model is loaded) and return the :class:`Settings`.

    Raises :class:`UsageError` with a message naming the flag and the fix.
    """
    from ..auto.plan import Plan, PlanError
    from ..auto.policy import policy_from
    from ..auto.pool import parse_pool_arg
    from ..auto.restorer import MAX_BUDGET

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise UsageError(message)

    need(args.steps is None or 1 <= args.steps <= 1000, f"--steps must be between 1 and 1000; got {args.steps}")
    need(args.tile is None or 64 <= args.tile <= 16384, f"--tile must be between 64 and 16384 px; got {args.tile}")
    need(math.isfinite(args.eta) and 0.0 <= args.eta <= 1.0, f"--eta must be between 0 and 1; got {args.eta}")
    need(math.isfinite(args.strength) and 0.0 <= args.strength <= 2.0,
         f"--strength must be between 0 and 2; got {args.strength}")
    need(-2 ** 63 <= args.seed < 2 ** 63, f"--seed must fit in 64 bits; got {args.seed}")
    need(args.budget is None or 1 <= args.budget <= MAX_BUDGET,
         f"--budget must be between 1 and {MAX_BUDGET} steps; got {args.budget}")
    threads = getattr(args, "threads", None)
    need(threads is None or 1 <= threads <= 1024, f"--threads must be at least 1; got {threads}")
    auto = args.mode == "auto" and args.text is None
    policy = list(getattr(args, "policy", None) or [])
    leave = getattr(args, "leave", None)
    if leave is not None:  # shorthand for the policy entry
        policy.append(f"leave_alone={leave}")
    if not auto and any((args.plan, args.pool, args.budget, args.upscale, args.classifier, args.report_json, policy)):
        raise UsageError("--plan, --pool, --budget, --upscale, --classifier, --report-json, --leave and --policy "
                         "belong to the automatic mode; drop --text / --mode single to use them")
    plan_text = None
    if args.plan:
        if args.plan.strip()[:1] in ("[", "{"):
            plan_text = args.plan
        elif Path(args.plan).is_file():
            plan_text = Path(args.plan).read_text()
        else:
            raise UsageError(f"--plan {args.plan!r}: no such file, and not JSON; give a .json file or JSON text")
        try:
            Plan.from_json(plan_text)
        except PlanError as e:
            raise UsageError(str(e)) from None
    pool = []
    for arg in args.pool:
        try:
            file, tasks = parse_pool_arg(arg)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if not Path(file).is_file():
            raise UsageError(f"--pool {arg}: model file not found: {file}")
        pool.append(f"{Path(file).resolve()}={','.join(tasks)}")
    if policy:
        try:
            policy_from(policy)
        except ValueError as e:
            raise UsageError(str(e)) from None
    if args.classifier and not Path(args.classifier).is_file():
        raise UsageError(f"--classifier {args.classifier}: no such file")
    if args.reference:
        try:
            load_image(args.reference)
        except (FileNotFoundError, ValueError) as e:
            raise UsageError(f"--reference: {e}") from None
    if args.model and not Path(args.model).exists():
        from ..core.weights import DEFAULT_WEIGHTS
        raise UsageError(f"--model: model file not found: {args.model}. Put an M3UNet .safetensors file there or "
                         f"leave --model out for the shipped default ({DEFAULT_WEIGHTS.name}).")
    return Settings(mode=args.mode, text=args.text, steps=args.steps, seed=args.seed, eta=args.eta,
                    strength=args.strength, model=_abs(args.model), tile=args.tile, budget=args.budget, plan=plan_text,
                    pool=pool, classifier=_abs(args.classifier), no_kernel_deblur=bool(getattr(args, "no_kernel_deblur", False)),
                    no_specialists=bool(getattr(args, "no_specialists", False)), upscale=bool(args.upscale),
                    policy=policy, reference=_abs(args.reference), overwrite=bool(getattr(args, "overwrite", False)),
                    threads=threads, report=bool(args.report_json))


# ------------------------------------------------------------------ restoring one image
def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return float("nan")


def _error_text(e: BaseException, source: str, writing: str | None = None) -> str:
    """One line naming the file: ``source`` (or ``writing``, the output being written) and what went wrong."""
    msg = str(e) or type(e).__name__
    if isinstance(e, OSError) and e.strerror:
        if writing is not None:
            return f"cannot write {writing}: {e.strerror} (the input {source} is untouched)"
        msg = f"{e.filename or source}: {e.strerror}"
    elif not isinstance(e, ValueError):
        msg = f"{type(e).__name__}: {msg}"
    return msg if source in msg else f"{source}: {msg}"


class BatchRestorer:
    """Restores one :class:`Job` at a time with the model(s) of :class:`Settings` (loaded once).

    :meth:`process` never raises for a bad image (only KeyboardInterrupt passes): it returns the
    log record, with ``status`` ok, skipped or failed.
    """

    def __init__(self, settings: Settings, model=None):
        from ..core.weights import load_model
        from ..restore.pipeline import Restorer
        self.s = settings
        if settings.threads:
            torch.set_num_threads(settings.threads)
        self.restorer = Restorer(model if model is not None else load_model(settings.model))
        self.auto = None
        self.plan = None
        self.notes: list[str] = []
        if settings.auto:
            self.auto = self._auto_restorer()
            if settings.plan:
                from ..auto.plan import Plan
                self.plan = Plan.from_json(settings.plan)
        self.reference = load_image(settings.reference) if settings.reference else None
        self.host = socket.gethostname()

    def _auto_restorer(self):
        from ..auto.factory import build_auto_restorer
        from ..auto.policy import policy_from
        from ..auto.pool import load_pool_model, parse_pool_arg
        from ..auto.restorer import SHIPPED_CLASSIFIER
        from ..restore.pipeline import DEFAULT_TILE
        models = []
        for arg in self.s.pool:
            file, tasks = parse_pool_arg(arg)
            models.append(load_pool_model(file, tasks))
        auto = build_auto_restorer(self.restorer, model_path=self.s.model, classifier=self.s.classifier or "shipped",
                                   pool_models=models, kernel_deblur=not self.s.no_kernel_deblur,
                                   specialists=not self.s.no_specialists, steps=self.s.steps,
                                   tile=self.s.tile or DEFAULT_TILE, policy=policy_from(self.s.policy or None))
        if auto.classifier is None:
            self.notes.append(f"no DegradationClassifier weights at {SHIPPED_CLASSIFIER}; restoring blind "
                              "(one M3UNet pass, empty text)")
        return auto

    def _restore(self, pixels: torch.Tensor, progress) -> tuple[torch.Tensor, dict, dict | None, str | None]:
        """(restored image, plan for the log, full report or None, report text or None)."""
        from ..core.control import make_control
        from ..restore.pipeline import DEFAULT_STEPS, DEFAULT_TILE
        if self.auto is not None:
            from ..auto.restorer import DEFAULT_BUDGET
            cb = (lambda p: progress(p.done / p.total if p.total else 0.0)) if progress else None
            result = self.auto.run(pixels[None], plan=self.plan, budget=self.s.budget or DEFAULT_BUDGET,
                                   seed=self.s.seed, upscale=self.s.upscale, progress=cb)
            report = result.reports[0].to_dict()
            return result.image[0], {"mode": "auto", **report.get("plan", {})}, report, result.text()
        steps = self.s.steps or DEFAULT_STEPS
        cb = (lambda p: progress(p.done / p.total)) if progress else None
        text = self.s.text or ""
        out = self.restorer.restore(pixels[None], text=text, steps=steps, seed=self.s.seed, eta=self.s.eta,
                                    control=make_control(self.s.strength), tile=self.s.tile or DEFAULT_TILE,
                                    progress=cb)[0]
        return out, {"mode": "single", "text": text, "steps": steps, "strength": self.s.strength}, None, None

    def _psnr(self, image: LoadedImage, restored: torch.Tensor) -> str:
        from ..core.metrics import psnr
        ref = self.reference
        if ref.pixels.shape != image.pixels.shape or restored.shape != image.pixels.shape:
            return (f"; --reference {self.s.reference} has shape {tuple(ref.pixels.shape)}, "
                    f"not {tuple(image.pixels.shape)}: no PSNR")

        def f(x: torch.Tensor) -> torch.Tensor:
            return (x.float() / 255 if x.dtype == torch.uint8 else x.float()).permute(2, 0, 1)
        r = f(ref.pixels)
        return f"; PSNR before {psnr(f(image.pixels), r):.2f} dB, after {psnr(f(restored), r):.2f} dB"

    def process(self, job: Job, progress=None) -> dict:
        """Restore ``job`` (unless its output is finished) and return its log record."""
        t0 = time.time()
        rec: dict = {"source": job.source, "output": job.output, "status": "failed", "error": None, "plan": None,
                     "seconds": None}
        stage = "read"
        try:
            state = output_state(job.output)
            if state == "complete" and not self.s.overwrite:
                rec.update(status="skipped", note="output exists (finished before; --overwrite redoes it)")
                return rec
            if state == "not a file":
                raise ValueError(f"{job.output} exists and is not a file; move it away")
            if state == "incomplete" and not self.s.overwrite:
                raise ValueError(f"{job.output} exists but is not a complete PNG; it was kept: delete it, or add "
                                 "--overwrite to replace it")
            if state != "missing" and os.path.samefile(job.output, job.source):
                raise ValueError(f"{job.output} is the input itself; it is never written over")
            image = load_image(job.source)
            h, w = image.pixels.shape[:2]
            rec.update(size=[w, h], bits=image.bits)
            if image.notes:
                rec["notes"] = list(image.notes)
            stage = "restore"
            restored, plan, report, text = self._restore(image.pixels, progress)
            rec["plan"] = plan
            if report is not None and self.s.report:
                rec["report"] = report
            if text:
                rec["text"] = text
            stage = "write"
            if job.comparison:
                before = image.pixels
                if before.shape[:2] != restored.shape[:2]:  # --upscale: the input at the output size
                    before = torch.nn.functional.interpolate(before.float().permute(2, 0, 1)[None],
                                                             size=restored.shape[:2], mode="nearest")[0].permute(1, 2, 0)
                    before = before.to(image.pixels.dtype)
                write_bytes_atomic(job.comparison, encode_png(side_by_side(before, restored)), overwrite=True)
                rec["comparison"] = job.comparison
            data = encode_png(restored, image.bits, image.icc_profile)
            write_bytes_atomic(job.output, data, overwrite=self.s.overwrite)
            rec.update(status="ok", seconds=round(time.time() - t0, 3))
            if self.reference is not None:
                rec["psnr"] = self._psnr(image, restored)
        except OutputExistsError:
            rec.update(status="skipped", note="output appeared meanwhile (another worker finished it)")
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - one image's failure is logged, the batch goes on
            rec.update(status="failed", error=_error_text(e, job.source, job.output if stage == "write" else None),
                       seconds=round(time.time() - t0, 3))
        finally:
            rec.update(end=round(time.time(), 3), pid=os.getpid(), host=self.host, rss_mb=_rss_mb(),
                       peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
        return rec


# ------------------------------------------------------------------ log, progress, Ctrl-C, summary
class Log:
    """The JSON-lines log: one record per image, appended (a line cut by a kill is closed first)."""

    def __init__(self, path: Path, run: str):
        self.path = path
        self.run = run
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "a+", encoding="utf-8")
        self.f.seek(0, os.SEEK_END)
        if self.f.tell() > 0:
            self.f.seek(self.f.tell() - 1)
            if self.f.read(1) != "\n":
                self.f.write("\n")
        self.f.seek(0, os.SEEK_END)

    def write(self, rec: dict) -> None:
        clean = {k: v for k, v in rec.items() if k not in ("report", "text")}
        self.f.write(json.dumps({"run": self.run, **clean}, default=str) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


class Bar:
    """One overall progress bar (count, rate, time left) on stderr; off when stderr is not a terminal."""

    def __init__(self, total: int, quiet: bool = False):
        try:
            from tqdm import tqdm  # installed with transformers, a dependency of the pack
        except ImportError:  # pragma: no cover - no bar, lines only
            from types import SimpleNamespace
            self.done, self.tq = 0, SimpleNamespace(n=0, update=lambda n: None, close=lambda: None)
            return
        self.done = 0
        self.tq = tqdm(total=total, unit="img", file=sys.stderr, disable=True if quiet else None, dynamic_ncols=True,
                       smoothing=0.1, bar_format="{percentage:3.0f}%|{bar}| {n:.0f}/{total} images "
                       "[{elapsed}<{remaining}, {rate_fmt}]{postfix}")

    def partial(self, fraction: float) -> None:
        """The current image is ``fraction`` done."""
        target = self.done + max(0.0, min(1.0, fraction)) * 0.999
        if target > self.tq.n:
            self.tq.update(target - self.tq.n)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self.tq.update(self.done - self.tq.n)

    def print(self, line: str, err: bool = False) -> None:
        stream = sys.stderr if err else sys.stdout
        try:
            from tqdm import tqdm
            tqdm.write(line, file=stream)
        except ImportError:  # pragma: no cover
            print(line, file=stream)
        stream.flush()

    def close(self) -> None:
        self.tq.close()


class StopRequest:
    """Ctrl-C: the first press stops the batch after the current image, the second at once.

    Installed only in the main thread; outside it (or as a library), Ctrl-C stays KeyboardInterrupt.
    """

    FIRST = ("Ctrl-C: stopping after the current image (Ctrl-C again to stop at once; nothing half-written is "
             "left either way)")

    def __init__(self, say=None, first: str | None = None):
        self.requested = False
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.first = first or self.FIRST
        self._old = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.say(self.first)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


@dataclass
class Tally:
    total: int
    ok: int = 0
    skipped: int = 0
    failed: int = 0
    interrupted: bool = False
    t0: float = field(default_factory=time.time)

    def add(self, rec: dict) -> None:
        if rec["status"] == "ok":
            self.ok += 1
        elif rec["status"] == "skipped":
            self.skipped += 1
        else:
            self.failed += 1

    def line(self, log: Path) -> str:
        left = self.total - self.ok - self.skipped - self.failed
        head = "stopped by Ctrl-C" if self.interrupted else "done"
        text = (f"{head}: {self.ok} restored, {self.skipped} skipped (already done), {self.failed} failed"
                + (f", {left} not started" if left else "") + f" of {self.total} images in {time.time() - self.t0:.1f}s"
                + f"; log {log}")
        if self.interrupted or left:
            text += "; run the same command again to resume"
        return text

    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.failed or self.ok + self.skipped < self.total else EXIT_OK


def describe(rec: dict) -> tuple[list[str], list[str]]:
    """(stdout lines, stderr lines) telling the user about one record."""
    src, dst = rec["source"], rec["output"]
    if rec["status"] == "failed":
        return [], [f"error: {rec['error']}"]
    if rec["status"] == "skipped":
        return [f"{src}: skipped, {dst} {rec.get('note', 'exists')}"], []
    out = []
    if rec.get("text"):
        out.append(f"{src}:\n  " + rec["text"].replace("\n", "\n  "))
    plan = rec.get("plan") or {}
    if not plan:
        return [f"{src} -> {dst} ({rec.get('note', 'done')})"], []
    how = "automatic" if plan.get("mode") == "auto" else f"{plan.get('steps')} steps"
    w, h = rec.get("size", ["?", "?"])
    msg = f"{src} -> {dst} ({w}x{h}, {how}, {rec.get('seconds') or 0:.1f}s)"
    msg += rec.get("psnr", "")
    if rec.get("comparison"):
        msg += f"; comparison {rec['comparison']}"
    if rec.get("notes"):
        msg += "; " + "; ".join(rec["notes"])
    out.append(msg)
    return out, []


def report_record(rec: dict, bar: Bar, reports, log: Log, tally: Tally, verbose: bool = True) -> None:
    """Log, count and print one record (and its automatic report, for --report-json)."""
    log.write(rec)
    tally.add(rec)
    if reports is not None and rec.get("report") is not None:
        reports.write(json.dumps({"file": rec["source"], **rec["report"]}) + "\n")
        reports.flush()
    out, err = describe(rec)
    for line in err:
        bar.print(line, err=True)
    if verbose:
        for line in out:
            bar.print(line)


def run_local(jobs: list[Job], settings: Settings, bar: Bar, log: Log, tally: Tally, reports=None,
              model=None) -> None:
    """Restore ``jobs`` one after another in this process (the default engine; ``model``: already loaded)."""
    worker = BatchRestorer(settings, model)
    for note in worker.notes:
        bar.print(f"note: {note}", err=True)
    with StopRequest(lambda line: bar.print(line, err=True)) as stop:
        try:
            for job in jobs:
                if stop.requested:
                    tally.interrupted = True
                    break
                rec = worker.process(job, progress=bar.partial)
                bar.advance()
                report_record(rec, bar, reports, log, tally)
        except KeyboardInterrupt:
            tally.interrupted = True


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"


def cleanup_partials(jobs: list[Job]) -> int:
    """Remove the temporary files killed runs left in the output folders of ``jobs``; how many."""
    removed = 0
    for folder in sorted({str(Path(j.output).parent) for j in jobs}):
        if Path(folder).is_dir():
            removed += remove_stale_partials(folder, recursive=False)
    return removed
