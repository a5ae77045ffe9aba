"""bench --batch: restore's throughput on a folder of small images, and bench's flags checked."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cli

REPO = Path(__file__).resolve().parent.parent


def m3unet(*args, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "m3unet", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_batch_bench_reports_rate_and_memory_per_worker(tmp_path):
    js = tmp_path / "bench.json"
    r = m3unet("bench", "--batch", "8", "--batch-side", "32", "--batch-engines", "local:1x1", "--json", js)
    assert r.returncode == 0, r.stderr
    res = json.loads(js.read_text())
    assert res["images"] == 8 and res["side"] == 32 and res["mode"] == "single"
    (row,) = res["rows"]
    assert row["setting"] == "local:1x1" and row["images"] == 8
    assert 0 < row["images_per_s"] <= row["steady_images_per_s"]
    (worker,) = row["per_worker"]
    assert worker["images"] == 8 and 0 < worker["rss_mb_at_end"] <= worker["peak_rss_mb"]
    assert "| local | 1 x 1 | 8 |" in r.stdout


@pytest.mark.parametrize("flags, message", [
    (["--sizes", "64,-128"], "--sizes must be between 16 and 16384 px; got [-128]"),
    (["--sizes", "64", "--steps", "0"], "--steps must be between 1 and 1000; got 0"),
    (["--batch", "1"], "--batch must be at least 2 images"),
    (["--batch", "4", "--batch-side", "-64"], "--batch-side must be between 16 and 400 px"),
    (["--batch", "4", "--batch-engines", "ray:0x1"], "'ray:0x1'"),
])
def test_bench_flags_are_checked(flags, message):
    r = m3unet("bench", *flags, timeout=120)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
