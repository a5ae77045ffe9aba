"""Reading and writing image files: pixels as the user sees them, outputs written atomically.

Reading (:func:`load_image`) gives ``[H, W, C]`` (C = 1 grey, 3 RGB, 4 RGBA) as the image is shown
by a viewer:

* the EXIF orientation is applied (a phone's portrait photo is upright, not sideways; the same
  transposition as Pillow's ``ImageOps.exif_transpose``, done on the array so that 16-bit samples
  keep their precision);
* an embedded ICC profile is converted to sRGB (Pillow's ImageCms, the working space of the
  models); where that is not possible (16-bit and float images, a broken profile) the pixels are
  kept, the profile is written into the output unchanged and a note says so;
* values are scaled by their type, never by their range: 8-bit 0-255, 16-bit 0-65535 (grey, RGB
  and RGBA PNG, at full 16-bit precision), 32-bit integer 0-2**32-1, float 0-1 (outside clipped);
  8-bit sources give uint8 pixels, deeper ones float32 in [0, 1] with ``bits == 16``, and
  :func:`write_image` writes those back as a 16-bit PNG;
* animated files (GIF, APNG, WebP) and multi-page TIFFs are refused with a clear message (the
  primary picture of a camera's MPO file is read);
* images of more than :data:`MAX_PIXELS` pixels or :data:`~m3unet.core.image.MAX_SIDE` px a side are
  refused from the file's header, before anything is decoded (Pillow's decompression-bomb error
  never reaches the user).

Writing (:func:`write_image`) encodes the PNG in memory, writes it to a hidden temporary file next
to the destination (``.NAME.HOST-PID-RANDOM.partial``), flushes it to disk and only then gives it
its name: a reader sees the old file or the complete new one, never a truncated PNG. With
``overwrite=False`` the new name is claimed with a hard link, so of two writers of one output
exactly one succeeds and an existing file is never replaced (:class:`OutputExistsError`).
"""
from __future__ import annotations

import errno
import io
import os
import re
import secrets
import socket
import struct
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, UnidentifiedImageError

from .image import MAX_SIDE

MAX_PIXELS = MAX_SIDE * MAX_SIDE  # 268 megapixels: the largest image read (16384 x 16384)
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's decompression-bomb check at the same limit

PARTIAL_SUFFIX = ".partial"
_ORIENTATION = 0x0112
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}
# Pillow reads 16-bit colour PNGs through these raw modes, keeping only the high byte of each sample;
# decoding the same data with the opposite byte order gives the low bytes (see _sixteen_bit_colour).
_SWAPPED_RAWMODE = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}


class ImageReadError(ValueError):
    """A file that cannot be read as an image; the message names the file and the fix."""


class ImageTooLargeError(ImageReadError):
    """An image over :data:`MAX_PIXELS` pixels or :data:`~m3unet.core.image.MAX_SIDE` px a side."""


class AnimatedImageError(ImageReadError):
    """An animated or multi-page file (GIF, APNG, WebP, TIFF): only still images are restored."""


class OutputExistsError(FileExistsError):
    """``write_image(..., overwrite=False)`` found a file at the destination (it is left as it was)."""


@dataclass
class LoadedImage:
    """An image file's pixels as shown by a viewer, and how they were obtained.

    ``pixels``: ``[H, W, C]`` uint8 (``bits == 8``) or float32 in [0, 1] (``bits == 16``: 16-bit,
    32-bit integer and float sources). ``icc_profile``: a profile the pixels are still in (kept,
    to be written into the output), None when they are sRGB. ``notes``: what was done to read it
    (orientation applied, profile converted or kept, float values clipped).
    """
    pixels: torch.Tensor
    bits: int = 8
    icc_profile: bytes | None = None
    notes: list[str] = field(default_factory=list)
    format: str = ""

    def as_uint8(self) -> torch.Tensor:
        """The pixels as uint8 (deeper images rounded to 8 bits)."""
        if self.pixels.dtype == torch.uint8:
            return self.pixels
        return (self.pixels * 255 + 0.5).clamp(0, 255).to(torch.uint8)


def _open(path: Path) -> Image.Image:
    """Open ``path`` (header only), refusing what cannot or must not be decoded."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as e:
        found = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(found.group(1)) / 1e6:.0f} megapixels" if found else "too many pixels"
        raise ImageTooLargeError(f"{path}: {size}; the largest image restored is {MAX_PIXELS / 1e6:.0f} megapixels "
                                 f"({MAX_SIDE} px a side): downscale or cut it into parts first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{path}: not a readable image ({e}); is the file complete and an image format "
                             "PIL reads (PNG, JPEG, WebP, TIFF, BMP)?") from e
    w, h = img.size
    if w * h > MAX_PIXELS or max(w, h) > MAX_SIDE:
        img.close()
        raise ImageTooLargeError(f"{path}: {w}x{h} px ({w * h / 1e6:.0f} megapixels); the largest image restored is "
                                 f"{MAX_PIXELS / 1e6:.0f} megapixels and {MAX_SIDE} px a side: downscale or cut it "
                                 "into parts first")
    frames = getattr(img, "n_frames", 1)
    if frames > 1 and img.format != "MPO":  # MPO: a camera JPEG with extra views; the first is the picture
        img.close()
        raise AnimatedImageError(f"{path}: an animated or multi-page {img.format} file ({frames} frames); only still "
                                 "images are restored: extract the frames first (e.g. `ffmpeg -i IN frames/%04d.png`) "
                                 "and restore that folder")
    return img


def _decode(img: Image.Image, path: Path) -> None:
    try:
        img.load()
    except Image.DecompressionBombError as e:  # pragma: no cover - the header check comes first
        raise ImageTooLargeError(f"{path}: {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        raise ImageReadError(f"{path}: not a readable image ({e}); is the file complete and an image format "
                             "PIL reads (PNG, JPEG, WebP, TIFF, BMP)?") from e


def _sixteen_bit_colour(path: Path, img: Image.Image, tiles: list) -> np.ndarray | None:
    """The full 16-bit samples of a 16-bit RGB/RGBA PNG (Pillow keeps only their high bytes), or None.

    The file is decoded a second time with the byte order of each sample swapped, which gives the
    low bytes through Pillow's own PNG decoder (unfiltering, interlacing); high * 256 + low.
    """
    if img.format != "PNG" or len(tiles) != 1 or tiles[0].args not in _SWAPPED_RAWMODE:
        return None
    tile = tiles[0]
    try:
        low = Image.open(path)
        low.tile = [tile._replace(args=_SWAPPED_RAWMODE[tile.args])]
        low.load()
        hi, lo = np.asarray(img), np.asarray(low)
    except Exception:  # noqa: BLE001 - an unexpected Pillow internals change: fall back to 8 bits
        return None
    if hi.shape != lo.shape:
        return None
    return hi.astype(np.uint16) * 256 + lo.astype(np.uint16)


def _profile_name(icc: bytes) -> str:
    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip() or "unnamed"
    except (ImageCms.PyCMSError, OSError, TypeError, ValueError):
        return "unreadable"


def _to_srgb(img: Image.Image, icc: bytes, path: Path, notes: list[str]) -> tuple[Image.Image, bytes | None]:
    """Convert an 8-bit image with an ICC profile to sRGB; on failure keep it (and its profile)."""
    name = _profile_name(icc)
    if name == "unreadable":
        notes.append("unreadable ICC profile ignored; pixels read as sRGB")
        return img, None
    if "srgb" in name.lower().replace(" ", ""):
        return img, None  # already sRGB (IEC 61966-2.1 and its variants)
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    if img.mode not in ("L", "LA", "RGB", "RGBA", "CMYK"):
        notes.append(f"ICC profile '{name}' of a {img.mode} image not converted; pixels read as they are")
        return img, None
    alpha = img.getchannel("A") if img.mode in ("RGBA", "LA") else None
    base = {"RGBA": "RGB", "LA": "L"}.get(img.mode, img.mode)
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        rgb = ImageCms.profileToProfile(img.convert(base), src, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, TypeError, ValueError) as e:
        notes.append(f"ICC profile '{name}' could not be converted to sRGB ({e}); pixels kept as they are and "
                     "the profile written into the output")
        return img, icc
    if base == "L":  # a grey profile: grey stays grey (its three sRGB channels are equal)
        rgb = rgb.getchannel("R")
    if alpha is not None:
        rgb = Image.merge("LA" if base == "L" else "RGBA", [*rgb.split(), alpha])
    notes.append(f"ICC profile '{name}' converted to sRGB")
    return rgb, None


def load_image(path: Path | str) -> LoadedImage:
    """Read an image file as shown by a viewer (see the module docstring); clear errors otherwise.

    Raises FileNotFoundError, :class:`ImageReadError` (not an image, truncated),
    :class:`ImageTooLargeError` or :class:`AnimatedImageError`; all but the first are ValueErrors.
    """
    path = Path(path)
    img = _open(path)
    with img:
        fmt = img.format or ""
        tiles = list(img.tile)  # emptied by the decoding
        _decode(img, path)
        notes: list[str] = []
        if fmt == "MPO" and getattr(img, "n_frames", 1) > 1:
            notes.append(f"MPO file with {img.n_frames} pictures: the first (primary) one read")
        orientation = img.getexif().get(_ORIENTATION, 1)
        method = _TRANSPOSE.get(orientation)
        icc = img.info.get("icc_profile") or None
        wide = _sixteen_bit_colour(path, img, tiles)
        bits, kept_icc = 8, None
        if wide is not None:
            arr = wide.astype(np.float32) / 65535
            bits = 16
        elif img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            raw = np.asarray(img)
            deep = img.mode.startswith("I;16") or fmt == "PNG" or (fmt == "TIFF" and _tiff_bits(img) == 16)
            arr = (raw.astype(np.float64) / (65535.0 if deep else 4294967295.0)).clip(0, 1).astype(np.float32)[..., None]
            if not deep:
                notes.append("32-bit integer image: values read as 0..2**32-1")
            bits = 16
        elif img.mode == "F":
            raw = np.asarray(img, dtype=np.float32)
            outside = float(((raw < 0) | (raw > 1) | ~np.isfinite(raw)).mean())
            arr = np.nan_to_num(raw, nan=0.0, posinf=1.0, neginf=0.0).clip(0, 1)[..., None]
            if outside:
                notes.append(f"float image: values read as 0..1; {outside:.1%} of the pixels were outside and clipped")
            bits = 16
        else:
            src = img
            if icc:
                src, kept_icc = _to_srgb(img, icc, path, notes)
            arr = _eight_bit(src)
        if bits == 16 and icc:
            kept_icc = icc
            notes.append(f"ICC profile '{_profile_name(icc)}' kept (16-bit and float images are not converted) and "
                         "written into the output")
    if method is not None:
        arr = _orient(arr, method)
        notes.append(f"EXIF orientation {orientation} applied")
    tensor = torch.from_numpy(np.ascontiguousarray(arr))
    return LoadedImage(tensor, bits, kept_icc, notes, fmt)


def _tiff_bits(img: Image.Image) -> int:
    try:
        value = img.tag_v2.get(258, 16)  # BitsPerSample
        return int(value[0] if isinstance(value, tuple) else value)
    except (AttributeError, TypeError, ValueError):
        return 16


def _eight_bit(img: Image.Image) -> np.ndarray:
    """An 8-bit PIL image -> uint8 ``[H, W, C]`` (grey 1, RGB 3, with alpha 4)."""
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)
    if img.mode in ("L", "1"):
        return np.array(img.convert("L"), dtype=np.uint8)[..., None]
    if img.mode == "LA":
        la = np.asarray(img)
        return np.concatenate([la[..., :1].repeat(3, -1), la[..., 1:]], -1)
    return np.array(img.convert("RGBA" if has_alpha else "RGB"), dtype=np.uint8)


def _orient(arr: np.ndarray, method: Image.Transpose) -> np.ndarray:
    """Apply a PIL transpose to ``[H, W, C]`` (numpy, any dtype): the EXIF orientation."""
    T = Image.Transpose
    ops = {T.FLIP_LEFT_RIGHT: lambda a: a[:, ::-1], T.FLIP_TOP_BOTTOM: lambda a: a[::-1],
           T.ROTATE_180: lambda a: a[::-1, ::-1], T.ROTATE_90: lambda a: np.rot90(a, 1),
           T.ROTATE_270: lambda a: np.rot90(a, -1), T.TRANSPOSE: lambda a: a.transpose(1, 0, 2),
           T.TRANSVERSE: lambda a: np.rot90(a, 2).transpose(1, 0, 2)}
    return ops[method](arr)


def read_image(path: Path | str) -> torch.Tensor:
    """Read an image file as uint8 ``[H, W, C]`` (as :func:`load_image`, deeper images rounded to 8 bits)."""
    return load_image(path).as_uint8()


# ------------------------------------------------------------------ writing
# zlib level of written PNGs. Measured on a 4096 px photo-like image (scripts/png_level.py): level 6
# (Pillow's default) took 2.1x as long as level 3 and 2.8x as long as level 1, for files 13-14 % smaller.
PNG_LEVEL = 1


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png16(arr: np.ndarray, icc_profile: bytes | None) -> bytes:
    """A 16-bit PNG (grey, RGB or RGBA by the channels of uint16 ``[H, W, C]``), rows Sub-filtered."""
    h, w, c = arr.shape
    colour = {1: 0, 3: 2, 4: 6}[c]
    bpp = 2 * c
    raw = arr.astype(">u2").view(np.uint8).reshape(h, w * bpp)
    sub = raw.copy()
    sub[:, bpp:] = raw[:, bpp:] - raw[:, :-bpp]  # PNG filter 1 (Sub), modulo 256
    rows = np.concatenate([np.ones((h, 1), np.uint8), sub], 1)
    out = [b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0))]
    if icc_profile:
        out.append(_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))
    out += [_chunk(b"IDAT", zlib.compress(rows.tobytes(), PNG_LEVEL)), _chunk(b"IEND", b"")]
    return b"".join(out)


def encode_png(image: torch.Tensor, bits: int | None = None, icc_profile: bytes | None = None) -> bytes:
    """PNG bytes of ``[H, W, C]`` (C = 1, 3, 4): uint8 -> 8-bit; float (0-1) -> 8-bit, or 16-bit if ``bits == 16``."""
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"cannot write an image of shape {tuple(image.shape)} as PNG; expected [H, W, 1|3|4]")
    x = image.detach().cpu()
    if bits == 16:
        v = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        return _png16((v.clamp(0, 1).numpy() * 65535 + 0.5).astype(np.uint16), icc_profile)
    if x.dtype != torch.uint8:
        x = (x.float() * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    arr = x.numpy()
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(
        buf, format="PNG", compress_level=PNG_LEVEL, **({"icc_profile": icc_profile} if icc_profile else {}))
    return buf.getvalue()


def _partial_name(dst: Path) -> Path:
    token = f"{socket.gethostname().split('.')[0]}-{os.getpid()}-{secrets.token_hex(4)}"
    return dst.with_name(f".{dst.name}.{token}{PARTIAL_SUFFIX}")


def write_bytes_atomic(path: Path | str, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` so that ``path`` is never seen incomplete.

    The bytes go to a hidden temporary file in the same folder, are flushed to disk, and then get
    their name (``os.replace``; with ``overwrite=False`` a hard link that fails if ``path`` exists:
    :class:`OutputExistsError`, the existing file untouched). The temporary file never outlives
    the call, whatever fails (a kill leaves at most a ``*.partial`` file, see
    :func:`remove_stale_partials`).
    """
    dst = Path(path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial_name(dst)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, dst)
        else:
            _publish_new(tmp, dst)
        _sync_dir(dst.parent)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _publish_new(tmp: Path, dst: Path) -> None:
    """Give ``tmp`` the name ``dst`` only if nothing is there (atomically where hard links work)."""
    try:
        os.link(tmp, dst)
        return
    except FileExistsError:
        raise OutputExistsError(errno.EEXIST, "output exists", str(dst)) from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
    if os.path.lexists(dst):  # a file system without hard links: check, then rename
        raise OutputExistsError(errno.EEXIST, "output exists", str(dst))
    os.replace(tmp, dst)


def _sync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_image(path: Path | str, image: torch.Tensor, bits: int | None = None, icc_profile: bytes | None = None,
                overwrite: bool = True) -> None:
    """Write ``[H, W, C]`` as a PNG (mode L, RGB or RGBA by C; 16-bit if ``bits == 16``), atomically.

    ``icc_profile``: embedded as is (for pixels that are not sRGB). ``overwrite=False``: an
    existing file is kept and :class:`OutputExistsError` raised. See :func:`write_bytes_atomic`.
    """
    write_bytes_atomic(path, encode_png(image, bits, icc_profile), overwrite=overwrite)


def is_complete_png(path: Path | str) -> bool:
    """True if ``path`` is a file that starts with the PNG signature and ends with an IEND chunk."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(0, os.SEEK_END)
            if f.tell() < 8 + 25 + 12:
                return False
            f.seek(-12, os.SEEK_END)
            tail = f.read(12)
    except OSError:
        return False
    return head == b"\x89PNG\r\n\x1a\n" and tail == _chunk(b"IEND", b"")


def remove_stale_partials(folder: Path | str, min_age_s: float = 3600.0, recursive: bool = True) -> int:
    """Remove temporary files :func:`write_bytes_atomic` left in ``folder`` (and below, if
    ``recursive``) when its process was killed: those of a process of this host that is no longer
    running, and any older than ``min_age_s`` seconds (another host's). Returns how many were removed."""
    host = socket.gethostname().split(".")[0]
    pattern = re.compile(r"^\..+\.(?P<host>[^.]+)-(?P<pid>\d+)-[0-9a-f]{8}" + re.escape(PARTIAL_SUFFIX) + "$")
    removed = 0
    now = time.time()
    found = Path(folder).rglob if recursive else Path(folder).glob
    for p in found("*" + PARTIAL_SUFFIX):
        m = pattern.match(p.name)
        if m is None:
            continue
        try:
            stale = (m["host"] == host and not _alive(int(m["pid"]))) or now - p.stat().st_mtime > min_age_s
            if stale:
                p.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def side_by_side(before: torch.Tensor, after: torch.Tensor, gap: int = 8) -> torch.Tensor:
    """A before | after comparison image (``[H, W, 3]``, the dtype of ``after``; uint8 inputs give uint8)."""
    def rgb(x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        return x[..., :3] if x.shape[-1] >= 3 else x.expand(*x.shape[:-1], 3)
    b, a = rgb(before), rgb(after)
    sep = torch.ones((b.shape[0], gap, 3))
    out = torch.cat([b, sep, a], 1)
    return (out * 255 + 0.5).clamp(0, 255).to(torch.uint8) if after.dtype == torch.uint8 else out
