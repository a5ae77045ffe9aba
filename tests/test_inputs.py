"""Image files read as a viewer shows them, and written back without loss or truncation."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageOps

from m3unet.core import imageio
from m3unet.core.imageio import (AnimatedImageError, ImageTooLargeError, OutputExistsError, is_complete_png,
                                 load_image, read_image, write_image)

REPO = Path(__file__).resolve().parent.parent
SRGB_D50 = {"r": (0.4361, 0.2225, 0.0139), "g": (0.3851, 0.7169, 0.0971), "b": (0.1431, 0.0606, 0.7141)}


# ------------------------------------------------------------------ a small ICC profile writer
def _s15(v: float) -> bytes:
    return struct.pack(">i", int(round(v * 65536)))


def rgb_profile(name: str, red, green, blue, gamma: float = 2.2) -> bytes:
    """An ICC v2 display profile (matrix + gamma curves) with these D50 colorants."""
    def xyz(x, y, z):
        return b"XYZ " + b"\0" * 4 + _s15(x) + _s15(y) + _s15(z)
    text = name.encode() + b"\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 78
    curve = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, int(round(gamma * 256))) + b"\0\0"
    tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)), (b"rXYZ", xyz(*red)), (b"gXYZ", xyz(*green)),
            (b"bXYZ", xyz(*blue)), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve),
            (b"cprt", b"text" + b"\0" * 4 + b"none\0\0\0\0")]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        data += b"\0" * (-(offset + len(data)) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    head = (struct.pack(">I", offset + len(data)) + b"\0" * 4 + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
            + b"\0" * 12 + b"acsp" + b"\0" * 28 + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + b"\0" * 48)
    return head + struct.pack(">I", len(tags)) + table + data


def png16(path: Path, arr: np.ndarray) -> None:
    """A 16-bit PNG (grey, RGB or RGBA by channels), every row Paeth-filtered (as encoders often do)."""
    h, w, c = arr.shape
    raw = arr.astype(">u2").view(np.uint8).reshape(h, w * 2 * c).astype(np.int32)
    bpp = 2 * c
    rows = []
    for y in range(h):
        cur, prev = raw[y], raw[y - 1] if y else np.zeros_like(raw[0])
        out = np.empty_like(cur)
        for x in range(cur.size):
            a = cur[x - bpp] if x >= bpp else 0
            b = prev[x]
            cc = prev[x - bpp] if x >= bpp else 0
            p = a + b - cc
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else cc)
            out[x] = (cur[x] - pred) % 256
        rows.append(b"\x04" + out.astype(np.uint8).tobytes())

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    colour = {1: 0, 3: 2, 4: 6}[c]
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


# ------------------------------------------------------------------ reading
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    arr = np.random.default_rng(orientation).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(tmp_path / "o.jpg", exif=exif.tobytes(), quality=100)
    got = read_image(tmp_path / "o.jpg").numpy()
    want = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.jpg")))
    assert got.shape == want.shape and np.array_equal(got, want)
    if orientation in (5, 6, 7, 8):  # a phone's portrait photo: upright, 20 wide and 30 high
        assert got.shape[:2] == (30, 20)


def test_sixteen_bit_exif_orientation(tmp_path):
    arr = (np.random.default_rng(0).integers(0, 65535, (12, 20, 1))).astype(np.uint16)
    im = Image.fromarray(arr[..., 0])
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "g.png", exif=exif.tobytes())
    got = load_image(tmp_path / "g.png")
    assert got.bits == 16 and got.pixels.shape == (20, 12, 1)
    assert np.allclose(got.pixels[..., 0].numpy() * 65535, np.rot90(arr[..., 0], -1), atol=0.5)


def test_icc_profile_is_converted_to_srgb(tmp_path):
    """A profile whose red is sRGB's blue: a viewer shows blue, and so must the restorer read it."""
    swapped = rgb_profile("Swapped RGB", SRGB_D50["b"], SRGB_D50["g"], SRGB_D50["r"])
    arr = np.zeros((16, 16, 3), np.uint8)
    arr[..., 0] = 255
    Image.fromarray(arr).save(tmp_path / "p.png", icc_profile=swapped)
    got = load_image(tmp_path / "p.png")
    assert got.pixels[0, 0].tolist() == [0, 0, 255]
    assert got.icc_profile is None and any("converted to sRGB" in n for n in got.notes)
    # An sRGB profile changes nothing.
    Image.fromarray(arr).save(tmp_path / "s.png", icc_profile=ImageCms.ImageCmsProfile(
        ImageCms.createProfile("sRGB")).tobytes())
    same = load_image(tmp_path / "s.png")
    assert same.pixels[0, 0].tolist() == [255, 0, 0] and not same.notes


def test_icc_profile_that_cannot_be_converted_is_kept_and_said(tmp_path):
    swapped = rgb_profile("Swapped RGB", SRGB_D50["b"], SRGB_D50["g"], SRGB_D50["r"])
    arr = np.random.default_rng(1).integers(0, 65535, (10, 12, 3)).astype(np.uint16)
    png16(tmp_path / "deep.png", arr)
    # Pillow writes no 16-bit colour PNG with a profile: add the iCCP chunk to ours.
    data = (tmp_path / "deep.png").read_bytes()
    iccp = b"ICC profile\x00\x00" + zlib.compress(swapped)
    chunk = struct.pack(">I", len(iccp)) + b"iCCP" + iccp + struct.pack(">I", zlib.crc32(b"iCCP" + iccp) & 0xFFFFFFFF)
    (tmp_path / "deep.png").write_bytes(data[:33] + chunk + data[33:])
    got = load_image(tmp_path / "deep.png")
    assert got.bits == 16 and got.icc_profile == swapped
    assert any("kept" in n and "Swapped RGB" in n for n in got.notes)
    write_image(tmp_path / "out.png", got.pixels, bits=16, icc_profile=got.icc_profile)
    assert Image.open(tmp_path / "out.png").info["icc_profile"] == swapped


def test_sixteen_bit_and_float_are_scaled_by_type_not_by_values(tmp_path):
    dark = np.random.default_rng(2).integers(0, 256, (20, 24)).astype(np.uint16)  # 16-bit, all <= 255: very dark
    Image.fromarray(dark).save(tmp_path / "dark16.png")
    got = load_image(tmp_path / "dark16.png")
    assert got.bits == 16 and float(got.pixels.max()) <= 255 / 65535 + 1e-6
    assert read_image(tmp_path / "dark16.png").max() <= 1  # dark stays dark in 8 bits too
    flt = np.random.default_rng(3).random((20, 24)).astype(np.float32) * 0.2  # a float image, values 0..0.2
    Image.fromarray(flt, mode="F").save(tmp_path / "f.tif")
    got = load_image(tmp_path / "f.tif")
    assert got.bits == 16 and np.allclose(got.pixels[..., 0].numpy(), flt, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_sixteen_bit_png_read_and_written_at_full_precision(tmp_path, channels):
    arr = np.random.default_rng(channels).integers(0, 65536, (9, 13, channels)).astype(np.uint16)
    arr[:3] = 4097  # odd values whose low byte matters
    png16(tmp_path / "in.png", arr)
    got = load_image(tmp_path / "in.png")
    assert got.bits == 16 and got.pixels.dtype == torch.float32
    assert np.array_equal(np.round(got.pixels.numpy() * 65535).astype(np.uint16), arr)
    write_image(tmp_path / "out.png", got.pixels, bits=16)
    back = load_image(tmp_path / "out.png")
    assert back.bits == 16 and torch.equal(back.pixels, got.pixels)
    if channels == 1:
        assert Image.open(tmp_path / "out.png").mode == "I;16"


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_files_are_refused_clearly(tmp_path, fmt):
    frames = [Image.fromarray(np.full((20, 20, 3), v, np.uint8)) for v in (0, 120, 250)]
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with pytest.raises(AnimatedImageError, match=r"animated or multi-page .* \(3 frames\).*ffmpeg"):
        load_image(path)


def test_pixel_limit_is_a_clear_error_not_a_decompression_bomb(tmp_path):
    def header_only(path, w, h):
        def chunk(kind, body):
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                         + chunk(b"IEND", b""))
    assert imageio.MAX_PIXELS == 16384 * 16384
    header_only(tmp_path / "bomb.png", 40000, 40000)
    with pytest.raises(ImageTooLargeError, match="1600 megapixels; the largest image restored is 268 megapixels"):
        load_image(tmp_path / "bomb.png")
    header_only(tmp_path / "big.png", 16385, 16385)
    with pytest.raises(ImageTooLargeError, match="16385x16385 px"):
        load_image(tmp_path / "big.png")


# ------------------------------------------------------------------ writing
def test_writes_are_atomic_when_the_encoder_or_the_disk_fails(tmp_path, monkeypatch):
    dst = tmp_path / "x.png"
    old = torch.zeros(16, 16, 3, dtype=torch.uint8)
    write_image(dst, old)
    before = dst.read_bytes()
    real_write = os.write
    calls = {"n": 0}

    def disk_full(fd, data):
        calls["n"] += 1
        if calls["n"] == 1:
            real_write(fd, bytes(data)[:20])  # half a PNG reaches the disk, then the disk is full
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_image(dst, torch.full((16, 16, 3), 200, dtype=torch.uint8))
    monkeypatch.undo()
    assert dst.read_bytes() == before and is_complete_png(dst)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]  # no temporary file left
    with pytest.raises(OutputExistsError):
        write_image(dst, torch.full((16, 16, 3), 9, dtype=torch.uint8), overwrite=False)
    assert dst.read_bytes() == before


def test_a_killed_writer_never_leaves_a_truncated_file(tmp_path):
    """SIGKILL a process that rewrites one large PNG in a loop, at many moments: the file is always whole."""
    import signal
    import time
    code = ("import sys, torch; from m3unet.core.imageio import write_image\n"
            "g = torch.Generator().manual_seed(0)\n"
            "imgs = [torch.randint(0, 255, (1024, 1024, 3), dtype=torch.uint8, generator=g) for _ in range(2)]\n"
            "print('ready', flush=True)\n"
            "i = 0\n"
            "while True:\n"
            "    write_image(sys.argv[1], imgs[i % 2]); i += 1\n")
    dst = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", code, str(dst)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.2, 1.5)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if dst.exists():
            assert is_complete_png(dst)
            assert Image.open(dst).convert("RGB").size == (1024, 1024)
    assert dst.exists()
    leftovers = [p for p in tmp_path.iterdir() if p != dst]
    assert all(p.name.startswith(".photo.png.") and p.name.endswith(".partial") for p in leftovers)
    assert imageio.remove_stale_partials(tmp_path) == len(leftovers)  # the killed writers' pids are gone
    assert [p.name for p in tmp_path.iterdir()] == ["photo.png"]
