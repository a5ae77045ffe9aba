"""Synthetic text images (documents, signs, captions) rendered with PIL for training and the OCR test.

The paper restores *text images*; real scans are not available offline, so pages are rendered
from random words in the DejaVu, STIX and Computer Modern fonts that matplotlib ships
(``mpl-data/fonts/ttf``), at varied sizes, ink and paper colours. ``render_page`` is seeded, so a
page is reproducible from its seed; training and evaluation use disjoint seed ranges.
"""
from __future__ import annotations

import os
import random
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Italic.ttf",
              "DejaVuSansMono.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf", "cmr10.ttf", "cmss10.ttf")

WORDS = ("the of and to in is was for on that with as by at from his her an were which are this be "
         "photo image restore light noise blur sharp colour color paper letter page old film scan "
         "river mountain house garden window street market station museum library school village "
         "winter summer autumn spring morning evening night family portrait wedding holiday "
         "January February March April May June July August September October November December "
         "London Paris Berlin Madrid Rome Vienna Prague Lisbon Dublin Oslo Tokyo Cairo Lima Quito "
         "chapter section figure table note index total price amount date name address phone "
         "quick brown fox jumps over lazy dog pack my box with five dozen liquor jugs "
         "ABC XYZ Ltd Co Inc No St Ave Rd Dr Mr Mrs Dr. Prof. & % $ # @ ( ) - , . ; : ! ?").split()


@lru_cache(maxsize=1)
def font_dir() -> Path:
    """The folder of TrueType fonts shipped by matplotlib (a development/training dependency)."""
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError("text images need matplotlib's bundled fonts: pip install matplotlib") from e
    return Path(os.path.dirname(matplotlib.__file__)) / "mpl-data" / "fonts" / "ttf"


@lru_cache(maxsize=256)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_dir() / name), size)


def random_line(rng: random.Random, n_words: int) -> str:
    """A line of random words, sometimes with a number, e.g. ``'Paris 1947 the old market'``."""
    words = [rng.choice(WORDS) for _ in range(n_words)]
    if rng.random() < 0.4:
        words.insert(rng.randrange(len(words) + 1), str(rng.randrange(1, 10000)))
    return " ".join(words)


def render_page(height: int, width: int, seed: int, min_size: int = 9, max_size: int = 40
                ) -> tuple[np.ndarray, list[str]]:
    """Render a page of text lines; return ``(uint8 image [H, W, 3], the lines drawn)``."""
    rng = random.Random(seed)
    paper = np.array([rng.randint(200, 255) for _ in range(3)])
    paper = np.clip(paper.mean() + (paper - paper.mean()) * 0.3, 0, 255).astype(int)
    ink = tuple(int(v) for v in np.clip(np.array([rng.randint(0, 90) for _ in range(3)]), 0, 255))
    if rng.random() < 0.15:  # light text on a dark ground (signs, slides)
        paper, ink = 255 - paper, tuple(255 - v for v in ink)
    img = Image.new("RGB", (width, height), tuple(int(v) for v in paper))
    draw = ImageDraw.Draw(img)
    size = rng.randint(min_size, max_size)
    font = _font(rng.choice(FONT_FILES), size)
    lines: list[str] = []
    y = rng.randint(-size // 2, size)
    while y < height:
        x = rng.randint(-size, size * 2)
        line = random_line(rng, rng.randint(2, 8))
        draw.text((x, y), line, fill=ink, font=font)
        lines.append(line)
        y += int(size * rng.uniform(1.15, 1.8))
    arr = np.asarray(img, dtype=np.float32)
    # gentle paper shading so pages are not perfectly flat
    gy = np.linspace(-1, 1, height, dtype=np.float32)[:, None, None]
    gx = np.linspace(-1, 1, width, dtype=np.float32)[None, :, None]
    arr = arr * (1 + 0.04 * (rng.uniform(-1, 1) * gx + rng.uniform(-1, 1) * gy))
    return np.clip(arr, 0, 255).round().astype(np.uint8), lines


def render_line(text: str, font_name: str, size: int, pad: int = 12) -> np.ndarray:
    """One line of ``text``, black on white, as uint8 ``[H, W, 3]`` (for the OCR benchmark)."""
    font = _font(font_name, size)
    left, top, right, bottom = font.getbbox(text)
    w, h = right - left + 2 * pad, bottom - top + 2 * pad
    w, h = w + (-w) % 8, h + (-h) % 8
    img = Image.new("RGB", (w, h), (255, 255, 255))
    ImageDraw.Draw(img).text((pad - left, pad - top), text, fill=(0, 0, 0), font=font)
    return np.asarray(img).copy()
