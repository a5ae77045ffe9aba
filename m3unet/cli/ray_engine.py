"""``restore --engine ray``: the same batch on a Ray cluster, with Ray Data.

The driver (this process) plans the jobs exactly as the local engine does (names, refusals,
skipping finished outputs: :mod:`m3unet.cli.batch`), then makes a Ray dataset of the remaining
jobs (file paths only, no pixels) and maps it in batches through an actor pool of restorers
(:class:`RayRestorer`: one :class:`~m3unet.cli.batch.BatchRestorer` per worker, the models loaded
once). Each worker reads its sources and writes its outputs itself, with the same atomic,
never-replacing writes, so the input and output folders must be at the same path on every node
(a shared file system). Records stream back to the driver, which writes the log, the progress bar
and the summary.

A lost worker (its node killed, out of memory) loses only the batches it had in flight: they are
left out of that pass, and the driver runs a further pass over the jobs that got no record (up to
:data:`MAX_PASSES`). An image the lost worker had already written is then found complete and
skipped, so every image is written exactly once: an output's name is claimed with a hard link that
fails if it exists.

Ray is an optional extra (``pip install 'ray[data]'``); without ``--address`` a local Ray instance
is started and stopped.
"""
from __future__ import annotations

import json
import logging
import math
import os
import warnings
from dataclasses import asdict, replace
from pathlib import Path

from .batch import (Bar, BatchRestorer, Job, Log, Settings, StopRequest, Tally, UsageError, output_state,
                    report_record)

MAX_PASSES = 4
BATCH = 4  # images per Ray task: small, so a lost worker loses little and the bar moves smoothly
REPO = Path(__file__).resolve().parents[2]


def check_ray(address: str | None = None) -> None:
    """Raise :class:`UsageError` if Ray Data cannot be imported.

    Without ``address`` (a local instance), Ray is first put in its single-machine mode, the one it
    uses on macOS and Windows, so that every service listens on 127.0.0.1 only.
    """
    if address is None:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as e:
        raise UsageError(f"--engine ray needs Ray Data, which is not installed ({e}): pip install 'ray[data]' "
                         "(or the pack's extra: pip install 'm3unet-restore[ray]')") from None


class RayRestorer:
    """A Ray Data actor: a :class:`BatchRestorer` built once, then batches of jobs -> JSON records."""

    def __init__(self, settings: dict):
        self.worker = BatchRestorer(Settings(**settings))

    def __call__(self, batch: dict) -> dict:
        records = []
        for source, output, comparison in zip(batch["source"], batch["output"], batch["comparison"]):
            rec = self.worker.process(Job(str(source), str(output), str(comparison) or None))
            records.append(json.dumps(rec, default=str))
        return {"index": list(batch["index"]), "record": records}


def _quiet_ray_logs() -> None:
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def run_ray(jobs: list[Job], settings: Settings, bar: Bar, log: Log, tally: Tally, reports=None,
            address: str | None = None, workers: int | None = None) -> None:
    """Restore ``jobs`` on the Ray cluster at ``address`` (None: a local one) with ``workers`` actors."""
    import ray
    import ray.data
    threads = settings.threads or 1
    settings = replace(settings, threads=threads)
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    init = dict(address=address, runtime_env={"env_vars": {"PYTHONPATH": path}}, include_dashboard=False,
                logging_level=logging.ERROR, log_to_driver=False)
    if address is None and workers:  # a local instance with as many CPUs as asked for
        init["num_cpus"] = max(workers * threads, os.cpu_count() or 1)
    try:
        ray.init(**init)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise UsageError(f"--address {address}: cannot connect to a Ray cluster ({e}); start one with `ray start "
                         "--head` (docs/batch.md)" if address else f"cannot start a local Ray instance ({e})") from None
    _quiet_ray_logs()
    try:
        cpus = float(ray.cluster_resources().get("CPU", 0))
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        most = max((float(n.get("Resources", {}).get("CPU", 0)) for n in nodes), default=0.0)
        if most < threads:
            raise UsageError(f"no node of the Ray cluster has {threads} CPUs for a worker (largest: {most:g}); "
                             "lower --threads or add CPUs")
        n = workers or max(1, int(cpus // threads))
        where = ", ".join(sorted({n_.get("NodeManagerAddress", "?") for n_ in nodes}))
        bar.print(f"ray: {len(nodes)} nodes at {where} with {cpus:g} CPUs; {n} workers x {threads} threads",
                  err=True)
        ctx = ray.data.DataContext.get_current()
        ctx.max_errored_blocks = -1  # a lost worker's batches are redone in the next pass, not fatal
        ctx.enable_progress_bars = False
        remaining = dict(enumerate(jobs))
        first = ("Ctrl-C: stopping; the images in flight on the workers are finished or dropped (nothing "
                 "half-written is left)")
        with StopRequest(lambda line: bar.print(line, err=True), first) as stop:
            try:
                for attempt in range(1, MAX_PASSES + 1):
                    if not remaining or stop.requested:
                        break
                    if attempt > 1:
                        bar.print(f"ray: {len(remaining)} images were in flight on a lost worker; restoring them "
                                  f"again (pass {attempt} of {MAX_PASSES})", err=True)
                    _one_pass(ray, remaining, settings, n, threads, stop, bar, log, tally, reports)
            except KeyboardInterrupt:
                stop.requested = True
            if stop.requested:
                tally.interrupted = True
        if tally.interrupted:  # outputs the workers finished while the driver stopped listening
            ray.shutdown()  # the workers stop: what is written now stays as it is
            for i, job in list(remaining.items()):
                if output_state(job.output) == "complete":
                    del remaining[i]
                    bar.advance()
                    report_record({"source": job.source, "output": job.output, "status": "ok", "error": None,
                                   "plan": None, "seconds": None,
                                   "note": "written by a Ray worker while the run stopped (its record was not "
                                           "received)"}, bar, reports, log, tally, verbose=False)
        else:
            for job in remaining.values():
                rec = {"source": job.source, "output": job.output, "status": "failed", "plan": None, "seconds": None,
                       "error": f"{job.source}: no Ray worker finished it in {MAX_PASSES} passes (workers lost)"}
                bar.advance()
                report_record(rec, bar, reports, log, tally)
    finally:
        ray.shutdown()


def _one_pass(ray, remaining: dict, settings: Settings, n: int, threads: int, stop: StopRequest, bar: Bar, log: Log,
              tally: Tally, reports) -> None:
    """One Ray Data pass over ``remaining`` (index -> job); each record received removes its job."""
    items = [{"index": i, "source": j.source, "output": j.output, "comparison": j.comparison or ""}
             for i, j in remaining.items()]
    ds = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / BATCH)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_restarts / max_task_retries are passed as "remote args"
        ds = ds.map_batches(RayRestorer, fn_constructor_kwargs={"settings": asdict(settings)}, batch_size=BATCH,
                            compute=ray.data.ActorPoolStrategy(size=min(n, len(items))), num_cpus=threads,
                            max_restarts=0, max_task_retries=0)
    try:
        for row in ds.iter_rows():
            i = int(row["index"])
            job = remaining.pop(i, None)
            if job is None:
                continue
            bar.advance()
            report_record(json.loads(row["record"]), bar, reports, log, tally)
            if stop.requested:
                break
    except ray.exceptions.RayError as e:
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        if isinstance(e, ray.exceptions.RayActorError) and "creation task" not in str(e):
            # A worker lost mid-pass (its node killed while the pass was being scheduled): the jobs that
            # got no record go to the next pass, as those of a worker lost with its batches do.
            bar.print(f"ray: a worker was lost during the pass ({first_line})", err=True)
            return
        raise UsageError(f"the Ray workers failed ({first_line}); is the pack installed at "
                         f"{REPO} on every node? (docs/batch.md)") from None
