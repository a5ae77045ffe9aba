"""restore on folders and globs: safe output names, resume, the log, failures that do not end the batch.

Each test is a user's command line run in a subprocess (``--mode single`` on small images, so each
run costs the model load and a fraction of a second per image).
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.cli

REPO = Path(__file__).resolve().parent.parent


def m3unet(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "m3unet", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def photo(path: Path, seed: int, size=(40, 48), mode="RGB", **save) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = size if mode == "L" else (*size, len(mode))
    arr = rng.integers(0, 255, shape, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode).save(path, **save)
    return arr


def digest(folder: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file under ``folder``."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def records(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def png_header_only(path: Path, w: int, h: int) -> None:
    """A PNG whose header claims ``w`` x ``h`` px (the pixel data is one empty chunk)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_output_folder_that_is_the_input_folder_is_refused(tmp_path):
    src = tmp_path / "album"
    photo(src / "x.png", 1)
    photo(src / "y.jpg", 2, quality=40)
    before = digest(src)
    r = m3unet("restore", src, "-o", src, "--mode", "single")
    assert r.returncode == 2 and "is an input folder" in r.stderr and "--allow-input-folder" in r.stderr, r.stderr
    r = m3unet("restore", src / "x.png", "-o", src, "--mode", "single")
    assert r.returncode == 2 and "is an input folder" in r.stderr and "Traceback" not in r.stderr
    assert digest(src) == before  # nothing written, the originals untouched
    # Said explicitly: outputs go next to the inputs, but an input is never written over.
    r = m3unet("restore", src, "-o", src, "--mode", "single", "--allow-input-folder")
    assert r.returncode == 0, r.stderr
    after = digest(src)
    assert {k: v for k, v in after.items() if k in before} == before
    assert {"x.png.png", "y.png"} <= set(after)
    # A rerun reads the originals only (the log lists what was written), and skips what is done.
    r = m3unet("restore", src, "-o", src, "--mode", "single", "--allow-input-folder")
    assert r.returncode == 0 and "x.png.png.png" not in digest(src), r.stderr
    assert "2 skipped" in r.stderr


def test_clashing_names_both_kept_and_folders_mirrored(tmp_path):
    src = tmp_path / "in"
    a = photo(src / "x.png", 1)
    photo(src / "x.jpg", 2, quality=95)
    photo(src / "2019" / "summer" / "beach.png", 3)
    photo(src / "2019" / "Beach.PNG", 4)
    photo(src / ".thumbs" / "x.png", 5)  # hidden: not an input
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    r = m3unet("restore", src, "-o", out, "--mode", "single", "--strength", "0")
    assert r.returncode == 0, r.stderr
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert made == ["2019/Beach.png", "2019/summer/beach.png", "x.jpg.png", "x.png.png"], made
    # strength 0 keeps each input exactly: every output is its own source's
    assert np.array_equal(np.asarray(Image.open(out / "x.png.png")), a)
    log = records(out / "restore-log.jsonl")
    assert {Path(r_["source"]).name: Path(r_["output"]).name for r_ in log} == {
        "x.png": "x.png.png", "x.jpg": "x.jpg.png", "beach.png": "beach.png", "Beach.PNG": "Beach.png"}


def test_globs_and_missing_inputs(tmp_path):
    src = tmp_path / "scans"
    photo(src / "a" / "one.png", 1)
    photo(src / "b" / "two.png", 2)
    photo(src / "b" / "three.jpg", 3)
    out = tmp_path / "out"
    r = m3unet("restore", f"{src}/**/*.png", tmp_path / "nothere.png", f"{tmp_path}/*.webp", "-o", out,
               "--mode", "single")
    assert r.returncode == 1, r.stderr  # two inputs named nothing: reported, the rest done
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["a/one.png", "b/two.png"]
    assert "nothere.png: no such image file" in r.stderr and "*.webp: no image file matches" in r.stderr
    assert "Traceback" not in r.stderr
    failed = [x for x in records(out / "restore-log.jsonl") if x["status"] == "failed"]
    assert len(failed) == 2


def test_existing_outputs_are_kept_unless_overwrite_and_a_rerun_resumes(tmp_path):
    src = tmp_path / "in"
    for i in range(3):
        photo(src / f"p{i}.png", i)
    out = tmp_path / "out"
    out.mkdir()
    mine = photo(out / "p0.png", 99)  # the user's own earlier result
    (out / "p1.png").write_bytes((src / "p1.png").read_bytes()[:60])  # cut short: not a finished output
    r = m3unet("restore", src, "-o", out, "--mode", "single")
    assert r.returncode == 1, r.stderr
    assert np.array_equal(np.asarray(Image.open(out / "p0.png")), mine)  # kept
    assert len((out / "p1.png").read_bytes()) == 60  # kept too, and said
    assert "p1.png exists but is not a complete PNG" in r.stderr and "--overwrite" in r.stderr
    assert (out / "p2.png").is_file()
    st = {x["source"].rsplit("/", 1)[1]: x["status"] for x in records(out / "restore-log.jsonl")}
    assert st == {"p0.png": "skipped", "p1.png": "failed", "p2.png": "ok"}
    stamp = (out / "p2.png").stat().st_mtime_ns
    r = m3unet("restore", src, "-o", out, "--mode", "single", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert not np.array_equal(np.asarray(Image.open(out / "p0.png")), mine)
    assert Image.open(out / "p1.png").size == (48, 40) and (out / "p2.png").stat().st_mtime_ns != stamp
    r = m3unet("restore", src, "-o", out, "--mode", "single")
    assert r.returncode == 0 and "3 skipped" in r.stderr and "Loading" not in r.stderr, r.stderr


def test_log_records_every_image(tmp_path):
    src = tmp_path / "in"
    photo(src / "good.png", 1)
    (src / "bad.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    log = tmp_path / "logs" / "run.jsonl"
    r = m3unet("restore", src, "-o", out, "--mode", "single", "--log", log)
    assert r.returncode == 1
    recs = {Path(x["source"]).name: x for x in records(log)}
    assert set(recs) == {"good.png", "bad.png"}
    for x in recs.values():
        assert {"source", "output", "status", "error", "plan", "seconds"} <= set(x)
    assert recs["good.png"]["status"] == "ok" and recs["good.png"]["error"] is None
    assert recs["good.png"]["plan"] == {"mode": "single", "text": "", "steps": 1, "strength": 1.0}
    assert recs["good.png"]["seconds"] > 0 and recs["good.png"]["output"].endswith("good.png")
    assert recs["bad.png"]["status"] == "failed" and "bad.png: not a readable image" in recs["bad.png"]["error"]


def test_one_failure_does_not_end_the_batch(tmp_path):
    """A huge image, an unwritable output slot and a too-small image fail one by one; the rest is done."""
    src = tmp_path / "in"
    photo(src / "a.png", 1)
    png_header_only(src / "huge.png", 30000, 30000)  # over Pillow's decompression-bomb limit
    png_header_only(src / "wide.png", 20000, 20)  # over the side limit
    photo(src / "tiny.png", 2, size=(8, 8))
    photo(src / "full.png", 3)
    photo(src / "z.png", 4)
    out = tmp_path / "out"
    out.mkdir()
    os.symlink("/dev/full", out / "full.png")  # writing there fails (ENOSPC)
    r = m3unet("restore", src, "-o", out, "--mode", "single")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert (out / "a.png").is_file() and (out / "z.png").is_file()
    assert "huge.png: 900 megapixels; the largest image restored is 268 megapixels" in r.stderr
    assert "wide.png: 20000x20 px" in r.stderr and "16384 px a side" in r.stderr
    assert "tiny.png" in r.stderr and "at least 16x16 px" in r.stderr
    assert "full.png exists and is not a file" in r.stderr
    assert "done: 2 restored, 0 skipped (already done), 4 failed of 6 images" in r.stderr


def test_bad_flags_are_one_error_before_the_model_loads(tmp_path):
    src = tmp_path / "in"
    for i in range(3):
        photo(src / f"p{i}.png", i)
    out = tmp_path / "out"
    missing_model = tmp_path / "no-such-model.safetensors"
    for flags, message in [(["--steps", "0"], "--steps must be between 1 and 1000; got 0"),
                           (["--steps", "-1"], "--steps must be between 1 and 1000; got -1"),
                           (["--tile", "0"], "--tile must be between 64 and 16384 px; got 0"),
                           (["--tile", "-512"], "--tile must be between 64 and 16384 px; got -512"),
                           (["--eta", "-0.5"], "--eta must be between 0 and 1"),
                           (["--strength", "nan"], "--strength must be between 0 and 2"),
                           (["--budget", "0"], "--budget must be between 1 and"),
                           (["--threads", "0"], "--threads must be at least 1"),
                           (["--workers", "2"], "--address and --workers belong to --engine ray"),
                           (["--reference", tmp_path / "nope.png"], "--reference: ")]:
        r = m3unet("restore", src, "-o", out, "--model", missing_model, *flags)
        assert r.returncode == 2, (flags, r.stderr)
        assert r.stderr.count("error:") == 1 and message in r.stderr, (flags, r.stderr)
        assert "no-such-model" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()  # nothing written, not even the output folder


def test_bad_reference_is_refused_before_any_work(tmp_path):
    photo(tmp_path / "x.png", 1)
    (tmp_path / "ref.png").write_bytes(b"broken")
    r = m3unet("restore", tmp_path / "x.png", "-o", tmp_path / "out", "--mode", "single", "--reference",
               tmp_path / "ref.png")
    assert r.returncode == 2 and "--reference" in r.stderr and "ref.png: not a readable image" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()


def test_progress_bar_on_a_terminal_and_quiet_elsewhere(tmp_path):
    import pty
    import select
    src = tmp_path / "in"
    for i in range(3):
        photo(src / f"p{i}.png", i)
    r = m3unet("restore", src, "-o", tmp_path / "plain", "--mode", "single")
    assert r.returncode == 0 and "\r" not in r.stderr and "images [" not in r.stderr, r.stderr
    master, slave = pty.openpty()
    import fcntl
    import termios
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal's size
    proc = subprocess.Popen([sys.executable, "-m", "m3unet", "restore", str(src), "-o", str(tmp_path / "tty"),
                             "--mode", "single"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 300)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(timeout=300)
    os.close(master)
    text = seen.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "3/3 images" in text and "img/s" in text and "<" in text, text  # count, rate, time left


def test_ctrl_c_stops_between_images_with_a_summary(tmp_path):
    import signal
    import time
    src = tmp_path / "in"
    for i in range(40):
        photo(src / f"p{i:02d}.png", i, size=(64, 64))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "m3unet", "restore", str(src), "-o", str(out), "--mode", "single"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not list(out.glob("p*.png")) and time.time() - t0 < 300:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    summary = [line for line in stderr.splitlines() if line.startswith("stopped by Ctrl-C")]
    assert len(summary) == 1 and "run the same command again to resume" in summary[0], stderr
    done = sorted(p.name for p in out.glob("p*.png"))
    assert 1 <= len(done) < 40
    for p in done:  # every output written is complete
        Image.open(out / p).load()
    assert not list(out.glob(".*partial"))
    r = m3unet("restore", src, "-o", out, "--mode", "single")
    assert r.returncode == 0 and f"{len(done)} skipped" in r.stderr, r.stderr
    assert len(list(out.glob("p*.png"))) == 40
