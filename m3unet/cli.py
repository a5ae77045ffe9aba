"""Command line: ``python -m m3unet restore|classify|eval|bench|train|prepare-data``."""
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
    e.add_argument("--crop", type=int, default=None, help="centre crop size per photo (0: whole photo; "
                   "default 256, with --peers 288)")
    e.add_argument("--steps", type=int, default=None, help="default steps to compare with 1 step")
    e.add_argument("--baselines", default="nlm,tv,bm3d", help="comma list: nlm,tv,bm3d (or none)")
    e.add_argument("--settings", default=None, help="comma list of settings (default: all)")
    e.add_argument("--json", default=None, help="also write the table as JSON here")
    mode = e.add_mutually_exclusive_group()
    mode.add_argument("--peers", action="store_true", help="quality next to BM3D, non-blind deconvolution, waifu2x "
                   "and Real-ESRGAN, with NIQE and BRISQUE and a steps sweep (m3unet/field_eval.py)")
    mode.add_argument("--ocr", action="store_true", help="OCR character accuracy on degraded rendered text lines: "
                   "input, M3UNet and peers (m3unet/ocr_eval.py)")
    e.add_argument("--sweep", default="1,2,4", help="with --peers: M3UNet step counts to evaluate")
    e.add_argument("--max-photos", dest="max_photos", type=int, default=None, help="with --peers: first N photos")
    e.add_argument("--lines", type=int, default=None, help="with --ocr: first N text lines (default all)")
    e.add_argument("--threads", type=int, default=2, help="with --peers/--ocr: torch and ncnn threads")
    e.add_argument("--plot", default=None, help="with --peers/--ocr: write a PNG plot here")

    b = sub.add_parser("bench", help="seconds per megapixel and peak memory by image size")
    b.add_argument("--sizes", default=None, help="comma list of sizes in px (default 512,1024,2048,4096; "
                   "with --peers 512,1024,2048)")
    b.add_argument("--model", default=None)
    b.add_argument("--steps", type=int, default=None)
    b.add_argument("--json", default=None)
    b.add_argument("--peers", action="store_true", help="M3UNet side by side with BM3D, NLM, Real-ESRGAN and "
                   "the U-Net compute of DiffBIR/SUPIR (m3unet/field_bench.py)")
    b.add_argument("--methods", default=None, help="with --peers: comma list of m3unet,bm3d,nlm,realesrgan,sd15,sdxl")
    b.add_argument("--bm3d-size", dest="bm3d_size", type=int, default=256,
                   help="with --peers: BM3D is measured at this size and scaled by pixels")
    b.add_argument("--resr-max-input", dest="resr_max_input", type=int, default=256,
                   help="with --peers: largest Real-ESRGAN input measured; larger ones are scaled by pixels")
    b.add_argument("--latent", type=int, default=64, help="with --peers: latent size of the timed U-Net step")
    b.add_argument("--threads", type=int, default=2, help="with --peers: torch/ncnn threads of every method")
    b.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="with --peers: report process CPU "
                   "time (robust on a shared machine) or wall time")
    b.add_argument("--plot", default=None, help="with --peers: write a PNG bar chart here")

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
    elif args.command == "eval" and args.peers:
        from .field_eval import main_args
        return main_args(args)
    elif args.command == "eval" and args.ocr:
        from .ocr_eval import main_args
        return main_args(args)
    elif args.command == "eval":
        from .evaluate import main_args
        return main_args(args)
    elif args.command == "bench" and args.peers:
        from .field_bench import main_args
        return main_args(args)
    elif args.command == "bench":
        from .bench import main_args
        return main_args(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
