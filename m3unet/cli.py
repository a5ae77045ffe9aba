"""Command line: ``python -m m3unet restore|classify|eval|bench|train|train-classifier|fit-classifier-heads|eval-classifier|prepare-data``."""
from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m m3unet", description="M3UNet text-guided image restoration")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("restore", help="restore image files into a folder (PNG, same file names)")
    r.add_argument("inputs", nargs="+", help="image files (PNG/JPEG/WebP...), grey/RGB/RGBA, any size")
    r.add_argument("-o", "--out", required=True, help="output folder")
    r.add_argument("--mode", choices=["auto", "single"], default="auto",
                   help="auto: fully automatic (default); single: exactly one M3UNet pass steered only by --text")
    r.add_argument("--text", default=None, help="restoration text, e.g. 'remove the heavy noise'")
    r.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's default)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--eta", type=float, default=0.0, help="stochasticity of the sampler, 0..1")
    r.add_argument("--strength", type=float, default=1.0, help="restoration strength 0..2")
    r.add_argument("--model", default=None, help="M3UNet .safetensors file (default: shipped weights)")
    r.add_argument("--tile", type=int, default=None, help="tile size in px (default 512)")
    r.add_argument("--before-after", action="store_true", help="also write NAME_before_after.png side by side")
    r.add_argument("--reference", default=None, help="clean reference image: print PSNR before/after")

    e = sub.add_parser("eval", help="PSNR/SSIM table per degradation on held-out photos")
    e.add_argument("--data", default=None, help="prepared photo folder (default: data/photos if present, "
                   "else the held-out photos bundled with scikit-image)")
    e.add_argument("--model", default=None)
    e.add_argument("--crop", type=int, default=256, help="centre crop size per photo (0: whole photo)")
    e.add_argument("--steps", type=int, default=None, help="default steps to compare with 1 step")
    e.add_argument("--baselines", default="nlm,tv,bm3d", help="comma list: nlm,tv,bm3d (or none)")
    e.add_argument("--settings", default=None, help="comma list of settings (default: all)")
    e.add_argument("--json", default=None, help="also write the table as JSON here")

    b = sub.add_parser("bench", help="seconds per megapixel and peak memory by image size")
    b.add_argument("--sizes", default="512,1024,2048,4096")
    b.add_argument("--model", default=None)
    b.add_argument("--steps", type=int, default=None)
    b.add_argument("--json", default=None)

    t = sub.add_parser("train", help="train M3UNet (paper recipe as defaults; resumable)")
    t.add_argument("--data", default="data/photos")
    t.add_argument("--out", default="runs/default")
    t.add_argument("--steps", type=int, default=None, help="total iterations (default 3000)")
    t.add_argument("--batch", type=int, default=None, help="batch size (default 10)")
    t.add_argument("--crop", type=int, default=None, help="crop size (default 256)")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-4)")
    t.add_argument("--lr-half-every", dest="lr_half_every", type=int, default=None, help="(default 1000)")
    t.add_argument("--ema", type=float, default=None)
    t.add_argument("--val-every", dest="val_every", type=int, default=None)
    t.add_argument("--save-every", dest="save_every", type=int, default=None)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--resume", default=None, help="state.safetensors to resume from")
    t.add_argument("--init", default=None, help="model .safetensors to start from (fresh optimizer)")
    t.add_argument("--dilations", default=None, help="refine-layer dilation rates, e.g. 3 or 3,4,5")
    t.add_argument("--loss", choices=["l1", "psnr"], default=None,
                   help="l1 (paper, default) or psnr (per-sample PSNR loss, balances degradation types)")
    t.add_argument("--text-fraction", dest="text_fraction", type=float, default=None,
                   help="share of training crops that are rendered text pages (default 0)")
    t.add_argument("--width", type=int, default=None, help="base width of the networks")

    c = sub.add_parser("classify", help="detect degradations: one JSON line per image (labels, severity, plan)")
    c.add_argument("inputs", nargs="+", help="image files (PNG/JPEG/WebP...), grey/RGB/RGBA, any size")
    c.add_argument("--classifier", default=None, help="classifier .safetensors (default: the shipped weights)")
    c.add_argument("--threshold", type=float, default=0.5, help="probability from which a label is reported")

    tc = sub.add_parser("train-classifier", help="train the DegradationClassifier on synthetic degradations")
    tc.add_argument("--data", default="data/photos")
    tc.add_argument("--out", default="runs/classifier")
    tc.add_argument("--steps", type=int, default=4000)
    tc.add_argument("--batch", type=int, default=24)
    tc.add_argument("--crops", type=int, default=6, help="crops per image in training")
    tc.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (warm-up, then cosine)")
    tc.add_argument("--region", type=int, default=192, help="size of the degraded photo regions")
    tc.add_argument("--seed", type=int, default=0)
    tc.add_argument("--threads", type=int, default=1)
    tc.add_argument("--minutes", type=float, default=None, help="stop after this many minutes")
    tc.add_argument("--init", default=None, help="classifier .safetensors to start from (warm start)")
    tc.add_argument("--warmup", type=int, default=200, help="linear learning-rate warm-up steps")

    fh = sub.add_parser("fit-classifier-heads", help="second stage: fit the classifier's decision heads on "
                        "cached features of its frozen CNN branches")
    fh.add_argument("--init", required=True, help="classifier .safetensors from train-classifier")
    fh.add_argument("--out", required=True, help="where to write the fitted classifier")
    fh.add_argument("--data", default="data/photos")
    fh.add_argument("--per-photo", dest="per_photo", type=int, default=120, help="degraded regions per training photo")
    fh.add_argument("--epochs", type=int, default=60)
    fh.add_argument("--seed", type=int, default=2)
    fh.add_argument("--threads", type=int, default=1)

    ec = sub.add_parser("eval-classifier", help="classifier F1 / severity / clean-pass rate on held-out photos")
    ec.add_argument("--classifier", default=None)
    ec.add_argument("--data", default=None, help="prepared photo folder (default: data/photos if present)")
    ec.add_argument("--per-photo", dest="per_photo", type=int, default=40,
                    help="clean, single and mixture samples per held-out photo (each)")
    ec.add_argument("--region", type=int, default=256,
                    help="square region size in px (0: the largest square of each photo)")
    ec.add_argument("--seed", type=int, default=0)
    ec.add_argument("--threshold", type=float, default=0.5)
    ec.add_argument("--json", default=None, help="also write the result as JSON here")

    d = sub.add_parser("prepare-data", help="gather clean photos from offline sources with a manifest")
    d.add_argument("--out", default="data/photos")
    d.add_argument("--cache", default=None)
    d.add_argument("--max-side", type=int, default=1024)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ValueError as e:  # CheckpointError, InputError: clear messages, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    if args.command == "train":
        from .train import main_args
        main_args(args)
    elif args.command == "prepare-data":
        from .data import prepare
        m = prepare(args.out, args.cache, args.max_side)
        print(f"wrote {m['counts']} photos and {args.out}/manifest.json")
    elif args.command == "restore":
        from .restore_cli import run
        return run(args)
    elif args.command == "classify":
        from .classify_cli import run
        return run(args)
    elif args.command == "train-classifier":
        from .classifier_training import main_args
        return main_args(args)
    elif args.command == "fit-classifier-heads":
        from .classifier_training import fit_main_args
        return fit_main_args(args)
    elif args.command == "eval-classifier":
        from .classifier_training import eval_main_args
        return eval_main_args(args)
    elif args.command == "eval":
        from .evaluate import main_args
        return main_args(args)
    elif args.command == "bench":
        from .bench import main_args
        return main_args(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
