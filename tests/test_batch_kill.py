"""A batch killed (SIGKILL) at random moments, again and again, resumes to the complete, correct tree."""
from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.cli, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent


def tree(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def pixels(path: Path) -> np.ndarray:
    im = Image.open(path)
    im.load()
    return np.asarray(im)


# Enough images that the 14 attempts below cannot finish the batch even on a fast machine, where
# each attempt restores several more after its target before the kill lands.
N_IMAGES = 144


def test_killed_batch_resumes_to_a_complete_correct_tree(tmp_path):
    rng = np.random.default_rng(7)
    src = tmp_path / "album"
    for i in range(N_IMAGES):
        folder = src / ("scans" if i % 3 == 0 else "phone" if i % 3 == 1 else ".")
        folder.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 255, (48, 56, 3), dtype=np.uint8)
        if i % 4 == 0:
            Image.fromarray(arr).save(folder / f"img{i:03d}.jpg", quality=60)
        elif i % 4 == 1:
            Image.fromarray(arr[..., 0]).save(folder / f"img{i:03d}.png")
        elif i % 4 == 2:
            Image.fromarray((arr[..., 0].astype(np.uint16) * 257)).save(folder / f"img{i:03d}.png")  # 16-bit grey
        else:
            Image.fromarray(np.dstack([arr, arr[..., :1]])).save(folder / f"img{i:03d}.png")  # RGBA
    inputs_before = tree(src)
    cmd = [sys.executable, "-m", "m3unet", "restore", str(src), "--mode", "single", "--threads", "1"]

    ref = tmp_path / "reference"
    r = subprocess.run(cmd + ["-o", str(ref)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    expected = {k for k in tree(ref) if k != "restore-log.jsonl"}
    assert len(expected) == N_IMAGES

    out = tmp_path / "out"
    kills = mid_batch = 0
    for attempt in range(14):
        done = len(list(out.rglob("*.png"))) if out.exists() else 0
        proc = subprocess.Popen(cmd + ["-o", str(out)], cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if attempt % 3 == 0:  # during start-up and model load
            time.sleep(float(rng.uniform(0.5, 5.0)))
        else:  # while restoring and writing: after a few more outputs, at a random moment
            target = done + int(rng.integers(1, 10))
            while proc.poll() is None and (len(list(out.rglob("*.png"))) if out.exists() else 0) < target:
                time.sleep(0.01)
            time.sleep(float(rng.uniform(0.0, 0.3)))
            mid_batch += 1
        if proc.poll() is not None:  # it finished by itself: all done
            break
        proc.send_signal(signal.SIGKILL)
        kills += 1
        proc.wait()
        for p in out.rglob("*.png") if out.exists() else []:  # whatever exists is whole, at every moment
            pixels(p)
    assert kills >= 8 and mid_batch >= 5
    r = subprocess.run(cmd + ["-o", str(out)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr

    got = tree(out)
    assert {k for k in got if k != "restore-log.jsonl"} == expected  # complete, nothing extra (no partial file)
    for name in expected:
        assert np.array_equal(pixels(out / name), pixels(ref / name)), name
    assert tree(src) == inputs_before  # no input touched
    last_run = [json.loads(line) for line in (out / "restore-log.jsonl").read_text().splitlines()][-N_IMAGES:]
    assert sorted(Path(x["output"]).relative_to(out).as_posix() for x in last_run) == sorted(expected)
    assert {x["status"] for x in last_run} <= {"ok", "skipped"}
