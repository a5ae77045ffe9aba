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

import numpy as np
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


def test_photo(size: int) -> torch.Tensor:
    """A ``size`` px square uint8 IMAGE ``[1, H, W, 3]``: a validation photo (scikit-image's astronaut)
    resized, with Gaussian noise 15/255 and JPEG q40, seeded: what the automatic restore is for."""
    from PIL import Image

    from ..training import synthesis as deg
    from ..training.data import skimage_validation
    photo = Image.fromarray(skimage_validation(1024)["skimage-astronaut"]).resize((size, size), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(photo)).permute(2, 0, 1).float() / 255
    y = deg.apply(x, [deg.make("noise", (15 - 3) / 47), deg.make("jpeg", 0.5, quality=40)],
                  torch.Generator().manual_seed(size))
    return (y.permute(1, 2, 0)[None] * 255 + 0.5).clamp(0, 255).to(torch.uint8)


def auto_worker(size: int, model: str | None, threads: int = 2) -> dict:
    """The automatic restore of :func:`test_photo` at ``size`` px (in this process): seconds, peak
    memory, and where the time goes (classifier readings, model runs, the rest)."""
    from ..auto.factory import build_auto_restorer
    from ..restore.pipeline import Restorer
    from ..core.weights import load_model
    torch.set_num_threads(threads)
    auto = build_auto_restorer(Restorer(load_model(model)), model_path=model)
    auto.pool.restorer.embed_text([""])
    auto.run(test_photo(128))  # warm-up: one-time costs are not timed
    spent = {"classifier": 0.0, "models": 0.0, "classifier_passes": 0, "model_runs": 0}
    classify, run_model = auto.classifier, auto.pool.run

    def timed_classifier(image):
        t = time.perf_counter()
        out = classify(image)
        spent["classifier"] += time.perf_counter() - t
        spent["classifier_passes"] += 1
        return out

    def timed_run(*args, **kw):
        t = time.perf_counter()
        out = run_model(*args, **kw)
        spent["models"] += time.perf_counter() - t
        spent["model_runs"] += 1
        return out

    auto.classifier, auto.pool.run = timed_classifier, timed_run
    image = test_photo(size)
    base = _rss_mb()
    t0 = time.perf_counter()
    result = auto.run(image)
    sec = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mp = size * size / 1e6
    return {"size": size, "steps": "auto", "seconds": round(sec, 2), "sec_per_mp": round(sec / mp, 2),
            "peak_rss_mb": round(peak), "baseline_rss_mb": round(base),
            "classifier_seconds": round(spent["classifier"], 2), "classifier_passes": spent["classifier_passes"],
            "model_seconds": round(spent["models"], 2), "model_runs": spent["model_runs"],
            "other_seconds": round(sec - spent["classifier"] - spent["models"], 2),
            "steps_kept": [s.task for s in result.reports[0].steps if s.outcome == "kept"]}


def cli_seconds(size: int, model: str | None, folder: Path) -> dict:
    """One M3UNet pass through the command line (``restore --mode single``) on a PNG of :func:`test_photo`:
    the whole process's wall time, and the model time the restore reports inside it."""
    from ..core.imageio import write_image
    src = folder / f"bench_{size}.png"
    write_image(src, test_photo(size)[0])
    cmd = [sys.executable, "-m", "m3unet", "restore", "--mode", "single", str(src), "-o", str(folder / "out")]
    if model:
        cmd += ["--model", model]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"restore failed at {size}px:\n{proc.stderr[-2000:]}")
    return {"size": size, "steps": "cli", "seconds": round(wall, 2), "sec_per_mp": round(wall / (size * size / 1e6), 2)}


def _in_fresh_process(call: str, failure: str) -> dict:
    """Run ``call`` (a worker of this module) in a fresh Python process, so its peak memory is its own;
    returns the JSON row it prints."""
    code = f"import json; from m3unet.evaluation.bench import auto_worker, worker; print(json.dumps({call}))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    if proc.returncode != 0:
        raise RuntimeError(f"{failure}:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(sizes: list[int], steps_list: list[int], model: str | None = None, log=print,
        kernel_deblur: bool = False) -> list[dict]:
    rows = []
    for steps in ([1] if kernel_deblur else steps_list):
        for size in sizes:
            rows.append(_in_fresh_process(f"worker({size}, {steps}, {model!r}, kernel_deblur={kernel_deblur})",
                                          f"bench worker failed at {size}px"))
            log(json.dumps(rows[-1]))
    return rows


def run_auto(sizes: list[int], model: str | None = None, cli: bool = True, log=print) -> list[dict]:
    """Automatic mode at each size (a fresh process each, for its own peak memory), and (``cli``) one
    pass through the command line, next to the one-pass rows of :func:`run`."""
    import tempfile
    rows = []
    for size in sizes:
        rows.append(_in_fresh_process(f"auto_worker({size}, {model!r})", f"bench auto worker failed at {size}px"))
        log(json.dumps(rows[-1]))
    if cli:
        with tempfile.TemporaryDirectory() as tmp:
            for size in sizes:
                rows.append(cli_seconds(size, model, Path(tmp)))
                log(json.dumps(rows[-1]))
    return rows


def auto_markdown(rows: list[dict]) -> str:
    """Automatic mode and the command line next to one model pass (same run, same sizes)."""
    one = {r["size"]: r for r in rows if r["steps"] == 1}
    auto = {r["size"]: r for r in rows if r["steps"] == "auto"}
    cli = {r["size"]: r for r in rows if r["steps"] == "cli"}
    out = ["| size | one pass s/MP | command line, one pass s/MP (vs the pass) | automatic s/MP | automatic: "
           "classifier / models / other (s) | readings, model runs | automatic peak RSS MB (vs 1024 px) |",
           "|---|---|---|---|---|---|---|"]
    ref = auto.get(1024, {}).get("peak_rss_mb")
    for size in sorted(auto):
        a, o, c = auto[size], one.get(size), cli.get(size)
        cli_cell = f"{c['sec_per_mp']} ({c['seconds'] / o['seconds']:.2f}x)" if c and o else "-"
        peak = f"{a['peak_rss_mb']} ({a['peak_rss_mb'] / ref:.2f}x)" if ref else str(a["peak_rss_mb"])
        out.append(f"| {size} | {o['sec_per_mp'] if o else '-'} | {cli_cell} | {a['sec_per_mp']} | "
                   f"{a['classifier_seconds']} / {a['model_seconds']} / {a['other_seconds']} | "
                   f"{a['classifier_passes']}, {a['model_runs']} | {peak} |")
    return "\n".join(out) + "\n"


def to_markdown(rows: list[dict]) -> str:
    ref = {r["steps"]: r["peak_rss_mb"] for r in rows if r["size"] == 1024}
    out = ["| size | steps | seconds | s / MP | peak RSS (MB) | peak vs 1024 px | RSS after model load (MB) |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["peak_rss_mb"] / ref[r["steps"]] if r["steps"] in ref else float("nan")
        out.append(f"| {r['size']} | {r['steps']} | {r['seconds']} | {r['sec_per_mp']} | {r['peak_rss_mb']} | "
                   f"{ratio:.2f}x | {r['baseline_rss_mb']} |")
    return "\n".join(out) + "\n"


def check_args(args) -> list[int]:
    """The sizes of ``--sizes``, with ``--sizes`` and ``--steps`` checked (ValueError names the flag)."""
    from ..core.image import MAX_SIDE, MIN_SIDE
    try:
        sizes = [int(s) for s in (args.sizes or "512,1024,2048,4096").split(",")]
    except ValueError:
        raise ValueError(f"--sizes must be a comma list of whole numbers of pixels; got {args.sizes!r}") from None
    bad = [s for s in sizes if not MIN_SIDE <= s <= MAX_SIDE]
    if bad:
        raise ValueError(f"--sizes must be between {MIN_SIDE} and {MAX_SIDE} px; got {bad}")
    if args.steps is not None and not 1 <= args.steps <= 1000:
        raise ValueError(f"--steps must be between 1 and 1000; got {args.steps}")
    return sizes


def main_args(args) -> int:
    sizes = check_args(args)
    steps = sorted({1, args.steps or DEFAULT_STEPS})
    rows = run(sizes, steps, args.model, kernel_deblur=getattr(args, "kernel_deblur", False))
    if getattr(args, "auto", False):
        rows += run_auto(sizes, args.model)
    print()
    print(to_markdown([r for r in rows if r["steps"] not in ("auto", "cli")]))
    if getattr(args, "auto", False):
        print(auto_markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0
