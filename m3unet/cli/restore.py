"""``python -m m3unet restore``: restore image files, folders and globs into an output folder.

``--mode auto`` (default): the automatic restore of :mod:`m3unet.auto.restorer` (classify, plan,
best pool model per step, roll back what does not help), printing its report per image.
``--mode single`` (or any ``--text``): exactly one M3UNet pass steered by ``--text``.

Every flag is checked before a model is loaded; outputs are named, written and resumed as
:mod:`m3unet.cli.batch` describes (docs/batch.md). ``--engine ray`` runs the same jobs on a Ray
cluster (:mod:`m3unet.cli.ray_engine`).
"""
from __future__ import annotations

import sys
from pathlib import Path

from .batch import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, LOG_NAME, Bar, Log, Tally, UsageError, cleanup_partials,
                    new_run_id, output_state, plan_jobs, report_record, run_local, settings_from_args)


def _check_engine_flags(args) -> None:
    engine = getattr(args, "engine", "local")
    workers = getattr(args, "workers", None)
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1; got {workers}")
    if engine != "ray" and (getattr(args, "address", None) or workers is not None):
        raise UsageError("--address and --workers belong to --engine ray")
    if engine == "ray":
        from .ray_engine import check_ray
        check_ray(getattr(args, "address", None))


def run(args) -> int:
    out = Path(args.out)
    try:
        _check_engine_flags(args)
        settings = settings_from_args(args)
        if out.exists() and not out.is_dir():
            raise UsageError(f"-o {out}: exists and is not a folder")
        log_path = Path(getattr(args, "log", None) or out / LOG_NAME)
        jobs, missing, notes = plan_jobs(args.inputs, out, getattr(args, "allow_input_folder", False),
                                         args.before_after, logs=(log_path,))
        model = None
        if jobs:  # the checkpoint is checked before anything is written (CheckpointError names the file)
            from ..core.weights import CheckpointError, load_model
            try:
                model = load_model(settings.model)
            except CheckpointError as e:
                raise UsageError(str(e)) from None
        if getattr(args, "reference", None) and len(jobs) > 1:
            notes.append("--reference is compared with every image; only images of its size get a PSNR")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"-o {out}: cannot create the output folder ({e.strerror})") from None
        try:
            log = Log(log_path, new_run_id())
        except OSError as e:
            raise UsageError(f"--log {log_path}: cannot write the log ({e.strerror})") from None
        try:
            reports = open(args.report_json, "w") if args.report_json else None
        except OSError as e:
            log.close()
            raise UsageError(f"--report-json {args.report_json}: cannot write ({e.strerror})") from None
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    total = len(jobs) + len(missing)
    tally = Tally(total)
    bar = Bar(total, quiet=getattr(args, "quiet", False))
    try:
        for spec, why in missing:
            rec = {"source": spec, "output": None, "status": "failed", "plan": None, "seconds": None, "error": why}
            bar.advance()
            report_record(rec, bar, reports, log, tally)
        cleanup_partials(jobs)
        todo = []
        done_before = 0
        for job in jobs:  # finished outputs are skipped without loading a model
            if not settings.overwrite and output_state(job.output) == "complete":
                log.write({"source": job.source, "output": job.output, "status": "skipped", "error": None, "plan": None,
                           "seconds": None, "note": "output exists (finished before; --overwrite redoes it)"})
                tally.skipped += 1
                done_before += 1
                bar.advance()
            else:
                todo.append(job)
        if done_before:
            bar.print(f"skipped {done_before} of {len(jobs)} images: their outputs exist (finished before; "
                      "--overwrite redoes them)", err=True)
        if todo:
            if getattr(args, "engine", "local") == "ray":
                from .ray_engine import run_ray
                run_ray(todo, settings, bar, log, tally, reports, address=args.address, workers=args.workers)
            else:
                run_local(todo, settings, bar, log, tally, reports, model=model)
        cleanup_partials(jobs)
    except KeyboardInterrupt:
        tally.interrupted = True
    finally:
        bar.close()
        log.close()
        if reports is not None:
            reports.close()
    print(tally.line(log_path), file=sys.stderr, flush=True)
    code = tally.exit_code()
    return code if code != EXIT_OK or tally.ok + tally.skipped == total else EXIT_FAILED
