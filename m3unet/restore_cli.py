"""``python -m m3unet restore``: restore image files into a folder (same names, PNG)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from .control import make_control
from .imageio import read_image, side_by_side, write_image
from .metrics import psnr
from .pipeline import DEFAULT_STEPS, DEFAULT_TILE, Progress, Restorer
from .weights import load_model


class _Bar:
    """A one-line text progress bar on stderr."""

    def __init__(self, label: str):
        self.label = label
        self.t0 = time.time()

    def __call__(self, p: Progress) -> None:
        n = int(30 * p.done / p.total)
        sys.stderr.write(f"\r{self.label} [{'#' * n}{'.' * (30 - n)}] {p.done}/{p.total} "
                         f"{time.time() - self.t0:.1f}s")
        if p.done == p.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def run(args) -> int:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    restorer = Restorer(load_model(args.model))
    steps = args.steps or DEFAULT_STEPS
    text = args.text or ""
    if args.mode == "auto" and args.text is None:
        # Automatic mode: the degradation classifier (issue 3) will write the text here; until it
        # exists the shipped model restores blind (it is trained to work with empty text).
        text = ""
    failures = 0
    for name in args.inputs:
        src = Path(name)
        try:
            image = read_image(src)
        except (FileNotFoundError, ValueError) as e:
            print(f"skipped {src}: {e}", file=sys.stderr)
            failures += 1
            continue
        t0 = time.time()
        try:
            restored = restorer.restore(image[None], text=text, steps=steps, seed=args.seed, eta=args.eta,
                                        control=make_control(args.strength), tile=args.tile or DEFAULT_TILE,
                                        progress=_Bar(src.name))[0]
        except ValueError as e:
            print(f"skipped {src}: {e}", file=sys.stderr)
            failures += 1
            continue
        dst = out / (src.stem + ".png")
        write_image(dst, restored)
        msg = f"{src} -> {dst} ({image.shape[1]}x{image.shape[0]}, {steps} steps, {time.time() - t0:.1f}s)"
        if getattr(args, "reference", None):
            ref = read_image(args.reference)
            if ref.shape != image.shape:
                print(f"--reference {args.reference} has shape {tuple(ref.shape)}, not {tuple(image.shape)}",
                      file=sys.stderr)
            else:
                f = lambda x: x.float().permute(2, 0, 1) / 255  # noqa: E731
                msg += f"; PSNR before {psnr(f(image), f(ref)):.2f} dB, after {psnr(f(restored), f(ref)):.2f} dB"
        if args.before_after:
            ba = out / (src.stem + "_before_after.png")
            write_image(ba, side_by_side(image, restored))
            msg += f"; comparison {ba}"
        print(msg)
    return 1 if failures else 0
