"""restore and classify read images as a viewer shows them, and agree on bad files."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_inputs import SRGB_D50, png16, rgb_profile

pytestmark = pytest.mark.cli

REPO = Path(__file__).resolve().parent.parent


def m3unet(*args, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "m3unet", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_restore_reads_as_shown_and_keeps_sixteen_bits(tmp_path):
    """--strength 0 returns the input as read: upright, in sRGB, and a 16-bit PNG stays 16-bit."""
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    portrait = rng.integers(0, 255, (40, 64, 3), dtype=np.uint8)
    im = Image.fromarray(portrait)
    exif = im.getexif()
    exif[0x0112] = 6  # stored sideways, shown upright
    im.save(src / "phone.jpg", exif=exif.tobytes(), quality=95)
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    Image.fromarray(red).save(src / "wide.png", icc_profile=rgb_profile("Swapped RGB", SRGB_D50["b"], SRGB_D50["g"],
                                                                      SRGB_D50["r"]))
    deep = rng.integers(0, 65536, (32, 40, 3)).astype(np.uint16)
    png16(src / "deep.png", deep)
    dark = rng.integers(0, 200, (32, 40)).astype(np.uint16)
    Image.fromarray(dark).save(src / "dark.png")
    out = tmp_path / "out"
    r = m3unet("restore", src, "-o", out, "--mode", "single", "--strength", "0")
    assert r.returncode == 0, r.stderr
    assert Image.open(out / "phone.png").size == (40, 64)  # upright: 40 wide, 64 high
    assert "EXIF orientation 6 applied" in r.stdout
    assert np.asarray(Image.open(out / "wide.png"))[0, 0].tolist() == [0, 0, 255]
    assert "ICC profile 'Swapped RGB' converted to sRGB" in r.stdout
    import cv2
    back = cv2.imread(str(out / "deep.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and np.abs(back[..., ::-1].astype(int) - deep).max() <= 1
    grey = np.asarray(Image.open(out / "dark.png"))
    assert Image.open(out / "dark.png").mode == "I;16" and np.abs(grey.astype(int) - dark).max() <= 1


def test_animated_input_is_refused_and_the_rest_restored(tmp_path):
    frames = [Image.fromarray(np.full((24, 24, 3), v, np.uint8)) for v in (0, 128, 255)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    Image.fromarray(np.full((24, 24, 3), 90, np.uint8)).save(tmp_path / "still.gif")
    r = m3unet("restore", tmp_path / "anim.gif", tmp_path / "still.gif", "-o", tmp_path / "out", "--mode", "single")
    assert r.returncode == 1 and "anim.gif: an animated or multi-page GIF file (3 frames)" in r.stderr, r.stderr
    assert not (tmp_path / "out" / "anim.png").exists() and (tmp_path / "out" / "still.png").is_file()


def test_classify_and_restore_give_the_same_exit_code_for_the_same_bad_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "tiny.png")
    for bad in ("broken.png", "tiny.png", "missing.png"):
        c = m3unet("classify", tmp_path / bad)
        r = m3unet("restore", tmp_path / bad, "-o", tmp_path / "out", "--mode", "single")
        assert c.returncode == r.returncode == 1, (bad, c.stderr, r.stderr)
        assert "Traceback" not in c.stderr + r.stderr


def test_classify_prints_strict_json_and_no_plan_for_tiny_images(tmp_path):
    rng = np.random.default_rng(0)
    for side in (16, 17, 20, 32):
        Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(tmp_path / f"r{side}.png")
    r = m3unet("classify", tmp_path)  # a folder
    assert r.returncode == 0, r.stderr

    def no_nan(token):
        raise AssertionError(f"bare {token} in the output")
    lines = [json.loads(line, parse_constant=no_nan) for line in r.stdout.splitlines()]
    assert sorted(Path(x["file"]).name for x in lines) == ["r16.png", "r17.png", "r20.png", "r32.png"]
    for x in lines:
        assert x["plan"] == [] and "restore does one blind pass" in x["note"], x
        if x.get("unmeasured"):
            assert all(x["labels"][k] is None for k in x["unmeasured"])
            assert "cannot be measured" in x["note"]
    assert any("unmeasured" in x for x in lines)  # the smallest have readings the network cannot make
