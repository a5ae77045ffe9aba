"""Text pages for the OCR-at-every-size check (m3unet.evaluation.ocr_pages)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from m3unet.evaluation.ocr_pages import (FACTORS, PAGE_SIZES, TEST_FONTS, VALIDATION_FONTS, downsample, pages,
                                         render_page)
from m3unet.training.textimage import FONT_FILES


def test_test_fonts_are_never_trained_on_nor_used_to_choose():
    assert not set(TEST_FONTS) & set(FONT_FILES) and not set(TEST_FONTS) & set(VALIDATION_FONTS)
    assert {p["font"] for p in pages("test", 2)} <= set(TEST_FONTS)
    assert {p["font"] for p in pages("validation", 2)} <= set(VALIDATION_FONTS)
    with pytest.raises(ValueError, match="validation or test"):
        pages("train")


def test_every_page_size_and_factor_is_covered():
    ps = pages("validation", 3)
    assert len(ps) == 3 * len(PAGE_SIZES) * len(FACTORS)
    assert {(p["size"], p["factor"]) for p in ps} == {(s, f) for s in PAGE_SIZES for f in FACTORS}
    assert {p["mode"] for p in ps} == {"bicubic", "area"}


@pytest.mark.parametrize("split", ["validation", "test"])
def test_pages_of_a_cell_differ_and_every_font_meets_both_filters(split):
    ps = [p for p in pages(split, 16) if p["size"] == "three lines" and p["factor"] == 3]
    assert len({tuple(p["lines"]) for p in ps}) == 16  # no page repeats another
    fonts = TEST_FONTS if split == "test" else VALIDATION_FONTS
    assert {(p["font"], p["mode"]) for p in ps[:8]} == {(f, m) for f in fonts for m in ("bicubic", "area")}
    assert {p["mode"] for p in ps[:4]} == {"bicubic", "area"}


def test_render_page_places_each_line_in_its_box():
    page, boxes = render_page(["Harbour Road 17", "Exit via the north stairwell"], "cmtt10.ttf", 20)
    assert page.dtype == np.uint8 and page.shape[0] == boxes[-1][1] and page.shape[1] % 8 == 0
    for top, bottom, right in boxes:
        assert page[top:bottom, :right].min() < 100  # ink inside the box
        assert right == page.shape[1] or page[top:bottom, right:].min() == 255  # paper beside it
    assert boxes[0][2] < page.shape[1]  # the shorter line leaves paper to its right


def test_downsample_keeps_the_size_and_loses_detail():
    page, _ = render_page(["Quartz clocks were mended by hand"], "cmb10.ttf", 24)
    x = torch.from_numpy(page).permute(2, 0, 1).float() / 255
    for mode in ("bicubic", "area"):
        y = downsample(x, 3, mode)
        assert y.shape == x.shape and float((y - x).abs().mean()) > 0.01
