"""``python -m m3unet bench --batch N``: throughput of ``restore`` on a folder of N small images.

The folder holds N crops (``--batch-side`` px, default 64) of the bundled degraded example photo at
seeded positions. Each engine setting runs the real command line in a fresh subprocess
(``restore FOLDER -o OUT --mode single ...``) into an empty output folder, and its JSON-lines log
gives, per worker process, the resident memory after each image. Reported per setting:

* images/s over the whole command (start-up, model loads and Ray included) and in the steady
  state (from the first image finished to the last, i.e. without start-up);
* per worker: peak resident memory (``ru_maxrss``) and the resident memory after its first tenth
  of images and after its last, which stay equal when memory does not grow with the run.

Settings are ``ENGINE:WORKERSxTHREADS``: ``local:1x2`` is this process with 2 torch threads,
``ray:2x1`` two Ray workers of 1 thread each on a local Ray instance.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "assets" / "examples" / "coffee_degraded.png"
DEFAULT_SETTINGS = "local:1x2,ray:1x2,ray:2x1"


def make_folder(folder: Path, n: int, side: int, seed: int = 0) -> None:
    """``n`` seeded ``side`` px crops of the degraded example photo (random pixels if it is missing)."""
    rng = np.random.default_rng(seed)
    photo = np.asarray(Image.open(EXAMPLE).convert("RGB")) if EXAMPLE.is_file() else \
        rng.integers(0, 255, (400, 600, 3), dtype=np.uint8)
    h, w = photo.shape[:2]
    for i in range(n):
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        sub = folder / f"{i // 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo[y:y + side, x:x + side]).save(sub / f"crop{i:04d}.png")


def parse_setting(text: str) -> tuple[str, int, int]:
    try:
        engine, shape = text.split(":")
        workers, threads = (int(v) for v in shape.lower().split("x"))
    except ValueError:
        raise ValueError(f"--batch-engines: {text!r} is not ENGINE:WORKERSxTHREADS (e.g. ray:2x1)") from None
    if engine not in ("local", "ray") or workers < 1 or threads < 1 or (engine == "local" and workers != 1):
        raise ValueError(f"--batch-engines: {text!r}: engine local or ray, local with 1 worker, counts >= 1")
    return engine, workers, threads


def measure(folder: Path, out: Path, n: int, engine: str, workers: int, threads: int, mode: str,
            model: str | None) -> dict:
    """Run one setting and summarise its log."""
    cmd = [sys.executable, "-m", "m3unet", "restore", str(folder), "-o", str(out), "--mode", mode,
           "--threads", str(threads)]
    if engine == "ray":
        cmd += ["--engine", "ray", "--workers", str(workers)]
    if model:
        cmd += ["--model", model]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"restore failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    recs = [json.loads(line) for line in (out / "restore-log.jsonl").read_text().splitlines() if line.strip()]
    ok = [r for r in recs if r["status"] == "ok"]
    if len(ok) != n:
        raise RuntimeError(f"{engine}:{workers}x{threads}: {len(ok)} of {n} images restored")
    ends = sorted(r["end"] for r in ok)
    per = {}
    for r in sorted(ok, key=lambda r: r["end"]):
        per.setdefault(r["pid"], []).append(r)
    workers_out = []
    for pid, rs in per.items():
        tenth = rs[max(0, len(rs) // 10 - 1)]
        workers_out.append({"pid": pid, "images": len(rs), "rss_mb_after_first_tenth": tenth["rss_mb"],
                            "rss_mb_at_end": rs[-1]["rss_mb"], "peak_rss_mb": max(r["peak_rss_mb"] for r in rs)})
    steady = (len(ends) - 1) / (ends[-1] - ends[0]) if len(ends) > 1 and ends[-1] > ends[0] else float("nan")
    return {"setting": f"{engine}:{workers}x{threads}", "engine": engine, "workers": workers, "threads": threads,
            "images": n, "wall_seconds": round(wall, 1), "images_per_s": round(n / wall, 2),
            "steady_images_per_s": round(steady, 2), "per_worker": workers_out}


def to_markdown(rows: list[dict]) -> str:
    out = ["| setting | workers x threads | images | wall s | images/s (whole command) | images/s (steady) | "
           "peak RSS per worker (MB) | RSS after 1st tenth -> at end, per worker (MB) |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        peaks = ", ".join(f"{w['peak_rss_mb']:.0f}" for w in r["per_worker"])
        flat = ", ".join(f"{w['rss_mb_after_first_tenth']:.0f} -> {w['rss_mb_at_end']:.0f}" for w in r["per_worker"])
        out.append(f"| {r['engine']} | {r['workers']} x {r['threads']} | {r['images']} | {r['wall_seconds']} | "
                   f"{r['images_per_s']} | {r['steady_images_per_s']} | {peaks} | {flat} |")
    return "\n".join(out) + "\n"


def main_args(args) -> int:
    n = args.batch
    if n < 2:
        raise ValueError(f"--batch must be at least 2 images; got {n}")
    side = args.batch_side
    if not 16 <= side <= 400:
        raise ValueError(f"--batch-side must be between 16 and 400 px; got {side}")
    settings = [parse_setting(s.strip()) for s in (args.batch_engines or DEFAULT_SETTINGS).split(",") if s.strip()]
    if any(e == "ray" for e, _, _ in settings):
        from .ray_engine import check_ray
        check_ray()
    rows = []
    with tempfile.TemporaryDirectory(prefix="m3unet-bench-") as tmp:
        folder = Path(tmp) / "in"
        make_folder(folder, n, side)
        for engine, workers, threads in settings:
            row = measure(folder, Path(tmp) / f"out-{engine}-{workers}x{threads}", n, engine, workers, threads,
                          args.batch_mode, args.model)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print()
    print(to_markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"images": n, "side": side, "mode": args.batch_mode, "rows": rows},
                                              indent=1))
    return 0
