"""Command line: ``python -m m3unet restore|classify|eval|plan-orders|bench|train|prepare-data``."""
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
    r.add_argument("--text", default=None, help="restoration text, e.g. 'remove the heavy noise' (given: one "
                   "M3UNet pass steered by it, also in auto mode)")
    r.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's default)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--eta", type=float, default=0.0, help="stochasticity of the sampler, 0..1")
    r.add_argument("--strength", type=float, default=1.0, help="restoration strength 0..2")
    r.add_argument("--model", default=None, help="M3UNet .safetensors file (default: shipped weights)")
    r.add_argument("--tile", type=int, default=None, help="tile size in px (default 512)")
    r.add_argument("--before-after", action="store_true", help="also write NAME_before_after.png side by side")
    r.add_argument("--reference", default=None, help="clean reference image: print PSNR before/after")
    r.add_argument("--budget", type=int, default=None, help="auto: at most this many restoration steps (default 4)")
    r.add_argument("--plan", default=None, help="auto: a plan (JSON text or a .json file) to run instead of "
                   "planning from the classifier, e.g. '[{\"task\": \"noise\"}, {\"task\": \"jpeg\"}]'")
    r.add_argument("--pool", action="append", default=[], metavar="FILE=TASK[,TASK]",
                   help="auto: add a spandrel-loadable .safetensors model (Real-ESRGAN, SwinIR, NAFNet, SCUNet...) "
                        "to the pool for these tasks; repeatable")
    r.add_argument("--upscale", action="store_true", help="auto: keep the larger size of an upscaling pool model")
    r.add_argument("--classifier", default=None, help="auto: DegradationClassifier weights (default: shipped)")
    r.add_argument("--report-json", dest="report_json", default=None,
                   help="auto: write each image's report (what was done and why) as JSON lines here")

    e = sub.add_parser("eval", help="PSNR/SSIM table per degradation on held-out photos")
    e.add_argument("--auto", action="store_true", help="instead: automatic restore vs one blind pass vs the best "
                   "fixed order on held-out mixes, and clean photos through auto restore")
    e.add_argument("--auto-rules", dest="auto_rules", action="store_true", help="instead: how well rules for "
                   "keeping or rolling back an automatic step agree with PSNR (needs a classifier)")
    e.add_argument("--per-set", dest="per_set", type=int, default=3, help="--auto: photos per mix (default 3)")
    e.add_argument("--classifier", default=None, help="--auto: classifier weights (default: shipped)")
    e.add_argument("--budget", type=int, default=4, help="--auto: step budget (default 4)")
    e.add_argument("--mixes", default=None, help="--auto: comma list of mixes, e.g. jpeg+noise,blur+jpeg+noise "
                   "(default: 5 pairs and 5 triples)")
    e.add_argument("--data", default=None, help="prepared photo folder (default: data/photos if present, "
                   "else the held-out photos bundled with scikit-image)")
    e.add_argument("--model", default=None)
    e.add_argument("--crop", type=int, default=256, help="centre crop size per photo (0: whole photo)")
    e.add_argument("--steps", type=int, default=None, help="default steps to compare with 1 step")
    e.add_argument("--baselines", default="nlm,tv,bm3d", help="comma list: nlm,tv,bm3d (or none)")
    e.add_argument("--settings", default=None, help="comma list of settings (default: all)")
    e.add_argument("--json", default=None, help="also write the table as JSON here")

    o = sub.add_parser("plan-orders", help="measure the best order of restoration steps on held-out mixes "
                       "(writes the table the planner reads)")
    o.add_argument("--model", default=None, help="M3UNet weights (default: shipped)")
    o.add_argument("--data", default=None, help="prepared photo folder (held-out split; default data/photos)")
    o.add_argument("--crop", type=int, default=256, help="centre crop size per photo")
    o.add_argument("--pairs", type=int, default=3, help="photos per pair of tasks (default 3)")
    o.add_argument("--triples", type=int, default=2, help="photos per triple of tasks (default 2)")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--threads", type=int, default=1)
    o.add_argument("--out", default=None, help="JSON table (default: m3unet/plan_orders.json, read by the planner)")
    o.add_argument("--md", default=None, help="Markdown copy (default: docs/plan_orders.md; '' for none)")

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
    elif args.command == "eval":
        from .evaluate import main_args
        return main_args(args)
    elif args.command == "plan-orders":
        from .orders import DEFAULT_MD, DEFAULT_OUT, main_args
        args.out = args.out or DEFAULT_OUT
        args.md = DEFAULT_MD if args.md is None else args.md
        return main_args(args)
    elif args.command == "bench":
        from .bench import main_args
        return main_args(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
