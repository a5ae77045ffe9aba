"""``python -m m3unet bench``: seconds per megapixel and peak memory by image size, on this CPU.

Each size runs in a fresh subprocess so that its peak resident memory (``ru_maxrss``) is its
own. Reported per size and step count: seconds, seconds per megapixel, the process's peak RSS
(what the user's machine must have), and the baseline RSS after loading the model and text
encoder. Timings of all sizes come from the same run, so their ratios are comparable.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..restore.pipeline import DEFAULT_STEPS


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(size: int, steps: int, model: str | None, threads: int = 2, warmup: bool = False,
           kernel_deblur: bool = False) -> dict:
    """Restore one random ``size`` x ``size`` float image (in this process) and measure it.

    ``warmup`` first restores a small image, so one-time costs (kernel selection) are not timed.
    ``kernel_deblur``: time the kernel-aware deblur instead (the blur estimator's reading, the
    deconvolution forced on at sigma 2 px, and its one-step clean-up pass; ``steps`` is not used).
    """
    from ..restore.pipeline import Restorer
    from ..core.weights import load_model
    torch.set_num_threads(threads)
    r = Restorer(load_model(model))
    r.embed_text([""])  # load the text encoder before measuring
    if warmup:
        r.restore(torch.rand(1, 64, 64, 3), "", steps=steps, seed=0)
    base = _rss_mb()
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, size, size, 3, generator=g)
    t0, c0 = time.perf_counter(), time.process_time()
    if kernel_deblur:
        from ..auto.deblur import KernelDeblur, estimate, load_shipped_estimator
        est = load_shipped_estimator()
        if est is None:
            raise RuntimeError("no blur estimator weights (weights/blur-estimator.safetensors) to bench")
        estimate(est, image[0].permute(2, 0, 1))
        KernelDeblur(est, r).restore(image, seed=0, sigma=2.0, noise=2.0)
    else:
        r.restore(image, "", steps=steps, seed=0)
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mp = size * size / 1e6
    return {"size": size, "steps": "kernel-deblur" if kernel_deblur else steps, "seconds": round(sec, 2), "sec_per_mp": round(sec / mp, 2),
            "peak_rss_mb": round(peak), "baseline_rss_mb": round(base),
            "image_buffers_mb": round(2 * size * size * 3 * 4 / 2 ** 20), "cpu_seconds": round(cpu, 2)}


def run(sizes: list[int], steps_list: list[int], model: str | None = None, log=print,
        kernel_deblur: bool = False) -> list[dict]:
    rows = []
    for steps in ([1] if kernel_deblur else steps_list):
        for size in sizes:
            code = ("import json,sys; from m3unet.evaluation.bench import worker; "
                    f"print(json.dumps(worker({size}, {steps}, {model!r}, kernel_deblur={kernel_deblur})))")
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  cwd=Path(__file__).resolve().parents[2])
            if proc.returncode != 0:
                raise RuntimeError(f"bench worker failed at {size}px:\n{proc.stderr[-2000:]}")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            log(json.dumps(row))
            rows.append(row)
    return rows


def to_markdown(rows: list[dict]) -> str:
    ref = {r["steps"]: r["peak_rss_mb"] for r in rows if r["size"] == 1024}
    out = ["| size | steps | seconds | s / MP | peak RSS (MB) | peak vs 1024 px | RSS after model load (MB) |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["peak_rss_mb"] / ref[r["steps"]] if r["steps"] in ref else float("nan")
        out.append(f"| {r['size']} | {r['steps']} | {r['seconds']} | {r['sec_per_mp']} | {r['peak_rss_mb']} | "
                   f"{ratio:.2f}x | {r['baseline_rss_mb']} |")
    return "\n".join(out) + "\n"


def main_args(args) -> int:
    sizes = [int(s) for s in (args.sizes or "512,1024,2048,4096").split(",")]
    steps = sorted({1, args.steps or DEFAULT_STEPS})
    rows = run(sizes, steps, args.model, kernel_deblur=getattr(args, "kernel_deblur", False))
    print()
    print(to_markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0
