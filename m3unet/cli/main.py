"""Command line: ``python -m m3unet restore|classify|policy|eval|plan-orders|bench|train|ablate-dilation|train-classifier|
fit-classifier-heads|set-classifier-min-side|set-classifier-calibration|eval-classifier|prepare-data``."""
from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m m3unet", description="M3UNet text-guided image restoration")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("restore", help="restore image files, folders and globs into a folder (PNG, same names; "
                       "resumable; docs/batch.md)")
    r.add_argument("inputs", nargs="+", help="image files (PNG/JPEG/WebP/TIFF...), folders (recursive, mirrored "
                   "into the output folder) or quoted globs such as 'scans/**/*.tif'")
    r.add_argument("-o", "--out", required=True, help="output folder (outputs that exist there are kept and "
                   "skipped: a rerun resumes)")
    r.add_argument("--overwrite", action="store_true", help="redo and replace outputs that exist (never an input)")
    r.add_argument("--allow-input-folder", dest="allow_input_folder", action="store_true",
                   help="allow an output folder that holds inputs (an input is still never replaced: a clashing "
                   "name keeps its extension, x.png -> x.png.png)")
    r.add_argument("--log", default=None, help="JSON-lines log, one record per image (default: OUT/restore-log.jsonl, "
                   "appended)")
    r.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process (default); ray: a Ray cluster's workers (pip install 'ray[data]'; "
                   "docs/batch.md)")
    r.add_argument("--address", default=None, help="--engine ray: address of a running Ray cluster, e.g. "
                   "10.0.0.5:6379 (default: start a local one)")
    r.add_argument("--workers", type=int, default=None, help="--engine ray: restoring workers (default: one per "
                   "--threads CPUs of the cluster)")
    r.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: all cores "
                   "locally, 1 per Ray worker)")
    r.add_argument("--mode", choices=["auto", "single"], default="auto",
                   help="auto: fully automatic (default); single: exactly one M3UNet pass steered only by --text")
    r.add_argument("--text", default=None, help="restoration text, e.g. 'remove the heavy noise' (given: one "
                   "M3UNet pass steered by it, also in auto mode)")
    r.add_argument("--steps", type=int, default=None, help="sampler steps of every M3UNet pass (default: 1 in "
                   "single mode; in auto mode 2 for noise and JPEG steps, 1 for the others)")
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
    r.add_argument("--no-kernel-deblur", dest="no_kernel_deblur", action="store_true",
                   help="auto: leave the kernel-aware deblur (estimated Gaussian kernel + Wiener + M3UNet "
                   "clean-up) and the motion deblur out of the pool; blur steps then use M3UNet alone")
    r.add_argument("--no-specialists", dest="no_specialists", action="store_true",
                   help="auto: leave the shipped M3UNet specialists (weights/m3unet-jpeg and m3unet-noise: "
                   "JPEG or noise where it is the only degradation read; m3unet-smallprint: small enlarged "
                   "print) out of the pool")
    r.add_argument("--upscale", action="store_true", help="auto: keep the larger size of an upscaling pool model")
    r.add_argument("--classifier", default=None, help="auto: DegradationClassifier weights (default: shipped)")
    r.add_argument("--report-json", dest="report_json", default=None,
                   help="auto: write each image's report (what was done and why) as JSON lines here")
    r.add_argument("--leave", default=None, metavar="TASK[,TASK]",
                   help="auto: never act on these degradations, whatever is read, e.g. --leave lowlight,haze keeps "
                   "the mood of a dark or misty photo (the policy entry leave_alone)")
    r.add_argument("--policy", action="append", default=[], metavar="KEY=VALUE",
                   help="auto: change one entry of the restore policy, e.g. print_guard=false (repeatable; "
                   "`python -m m3unet policy` lists them)")

    e = sub.add_parser("eval", help="PSNR/SSIM table per degradation on validation photos")
    e.add_argument("--auto", action="store_true", help="instead: automatic restore vs one blind pass vs the best "
                   "fixed order on validation mixes, and clean photos through auto restore")
    e.add_argument("--stress", action="store_true", help="instead: the stress set (test photos by default: wider "
                   "ranges than training, mixes in random order): classifier F1 per family and the automatic "
                   "restore's gain per kind and severity band (--json, --plot)")
    e.add_argument("--per-kind", dest="per_kind", type=int, default=2,
                   help="--stress: cases per kind and photo (default 2)")
    e.add_argument("--rules", action="store_true", help="instead: each special-case rule of the restore policy "
                   "switched off where it fired, over a seeded suite (mixes, single settings, clean, small crops, text "
                   "pages); --settings limits it to some rules, --per-set sets the mixes per set")
    e.add_argument("--auto-rules", dest="auto_rules", action="store_true", help="instead: how well rules for "
                   "keeping or rolling back an automatic step agree with PSNR (needs a classifier)")
    e.add_argument("--small-sides", dest="small_sides", default=None, metavar="PX[,PX]",
                   help="instead: automatic restore (classifier reading trusted at every size) vs one blind "
                   "pass on validation photos cropped to these sizes, e.g. 64,96,128: where the classifier's "
                   "minimum side (fit-classifier-heads --min-side) comes from")
    e.add_argument("--deblur", action="store_true", help="instead: Gaussian blur sigma 1/2/3 px x noise 2/5/10: "
                   "blind M3UNet vs the kernel-aware deblur (estimated kernel) vs the true kernel")
    e.add_argument("--balances", default=None, help="--deblur: also the true kernel at these Wiener balances, "
                   "e.g. 0.001,0.003,0.01,0.03,0.1")
    e.add_argument("--no-kernel-deblur", dest="no_kernel_deblur", action="store_true",
                   help="the auto column, --auto and --small-sides without the kernel-aware and motion deblur in the pool")
    e.add_argument("--no-specialists", dest="no_specialists", action="store_true",
                   help="the auto column, --auto and --small-sides without the shipped M3UNet specialists")
    e.add_argument("--estimator", default=None, help="--deblur: blur estimator weights (default: shipped)")
    e.add_argument("--per-set", dest="per_set", type=int, default=3, help="--auto: photos per mix (default 3)")
    e.add_argument("--classifier", default=None, help="classifier weights of the auto column and of --auto (default: shipped)")
    e.add_argument("--budget", type=int, default=4, help="--auto: step budget (default 4)")
    e.add_argument("--policy", action="append", default=[], metavar="KEY=VALUE",
                   help="the automatic restore: change one entry of the restore policy, e.g. print_guard=false (repeatable; "
                   "`python -m m3unet policy` lists them)")
    e.add_argument("--pool", action="append", default=[], metavar="FILE=TASK[,TASK]",
                   help="--auto: add a model to the pool (an M3UNet checkpoint or a spandrel model), as restore --pool")
    e.add_argument("--pool-steps", dest="pool_steps", type=int, default=None,
                   help="--auto: sampler steps of every M3UNet pass, automatic and fixed orders (default: per "
                   "task, as restore: 2 for noise and JPEG, 1 otherwise)")
    e.add_argument("--mixes", default=None, help="--auto: comma list of mixes, e.g. jpeg+noise,blur+jpeg+noise "
                   "(default: 5 pairs and 5 triples)")
    e.add_argument("--no-orders", dest="no_orders", action="store_true",
                   help="--auto: skip the fixed orders (every order of single-task passes): only input, one blind "
                   "pass and the automatic restore, several times faster (for comparing restore policies)")
    e.add_argument("--mix-seed", dest="mix_seed", type=int, default=1,
                   help="--auto: seed of the validation mixes (default 1, the reported ones; plan-orders measures seed 0)")
    e.add_argument("--data", default=None, help="prepared photo folder (default: data/photos if present, "
                   "else the validation photos bundled with scikit-image)")
    e.add_argument("--split", choices=("validation", "holdout", "test"), default=None,
                   help="photos to measure on: validation (chooses thresholds and rules; the default, and "
                   "the scikit-image photos when nothing is prepared), holdout (never trained on; more scenes to "
                   "check and choose on; needs prepare-data) or test (never used to choose; the published "
                   "figures, and the default of --stress; needs prepare-data)")
    e.add_argument("--model", default=None)
    e.add_argument("--crop", type=int, default=None, help="centre crop size per photo (0: whole photo; "
                   "default 256, with --peers 288)")
    e.add_argument("--steps", type=int, default=None, help="default steps to compare with 1 step")
    e.add_argument("--baselines", default="nlm,tv,bm3d", help="comma list: nlm,tv,bm3d (or none)")
    e.add_argument("--settings", default=None, help="comma list of settings (default: all)")
    e.add_argument("--json", default=None, help="also write the table as JSON here")
    e.add_argument("--text-ablation", dest="text_ablation", action="store_true",
                   help="instead: no / correct / wrong text on mixed degradations, and noise-only vs "
                   "blur-only controllability")
    e.add_argument("--per-photo", dest="per_photo", type=int, default=2,
                   help="--text-ablation: random mixtures per validation photo (default 2)")

    o = sub.add_parser("plan-orders", help="measure the best order of restoration steps on validation mixes "
                       "(writes the table the planner reads)")
    o.add_argument("--model", default=None, help="M3UNet weights (default: shipped)")
    o.add_argument("--data", default=None, help="prepared photo folder (validation split; default data/photos)")
    o.add_argument("--crop", type=int, default=256, help="centre crop size per photo")
    o.add_argument("--pairs", type=int, default=3, help="photos per pair of tasks (default 3)")
    o.add_argument("--triples", type=int, default=2, help="photos per triple of tasks (default 2)")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--threads", type=int, default=1)
    o.add_argument("--out", default=None, help="JSON table (default: m3unet/auto/plan_orders.json, read by the planner)")
    o.add_argument("--md", default=None, help="Markdown copy (default: docs/plan_orders.md; '' for none)")
    mode = e.add_mutually_exclusive_group()
    mode.add_argument("--peers", action="store_true", help="quality next to BM3D, non-blind deconvolution, waifu2x "
                   "and Real-ESRGAN, with NIQE and BRISQUE and a steps sweep (m3unet/evaluation/field.py)")
    mode.add_argument("--ocr", action="store_true", help="OCR character accuracy on degraded rendered text lines: "
                   "input, M3UNet and peers (m3unet/evaluation/ocr.py)")
    e.add_argument("--sweep", default="1,2,4", help="with --peers: M3UNet step counts to evaluate")
    e.add_argument("--max-photos", dest="max_photos", type=int, default=None, help="with --peers: first N photos")
    mode.add_argument("--ocr-validation", dest="ocr_validation", action="store_true",
                      help="OCR character accuracy of one M3UNet pass (--model) on 48 validation lines, for choosing "
                      "checkpoints (--settings: one OCR degradation, default lowres); never the test lines")
    mode.add_argument("--ocr-pages", dest="ocr_pages", action="store_true",
                      help="OCR character accuracy of text pages of every size down-sampled x2-x4, before and after "
                      "the automatic restore (m3unet/evaluation/ocr_pages.py; --split validation|test)")
    e.add_argument("--no-restore", dest="no_restore", action="store_true",
                   help="--stress: the classifier's reading only (F1), no restore")
    e.add_argument("--region", choices=("centre", "dark"), default="centre",
                   help="--stress: each photo's centre crop, or its darkest crop (its own dark scene)")
    e.add_argument("--per-cell", dest="per_cell", type=int, default=4,
                   help="--ocr-pages: pages per page size and factor (default 4)")
    e.add_argument("--page-sizes", dest="page_sizes", default=None,
                   help="--ocr-pages: comma list of page sizes to read (one small line, three lines, five lines, "
                   "eight lines; default all)")
    e.add_argument("--lines", type=int, default=None, help="with --ocr: first N text lines (default all)")
    e.add_argument("--threads", type=int, default=2, help="with --peers/--ocr: torch and ncnn threads")
    e.add_argument("--plot", default=None, help="with --peers/--ocr/--stress: write a PNG plot here")

    b = sub.add_parser("bench", help="seconds per megapixel and peak memory by image size")
    b.add_argument("--sizes", default=None, help="comma list of sizes in px (default 512,1024,2048,4096; "
                   "with --peers 512,1024,2048)")
    b.add_argument("--model", default=None)
    b.add_argument("--steps", type=int, default=None)
    b.add_argument("--json", default=None)
    b.add_argument("--auto", action="store_true", help="also the automatic restore of a noisy, compressed "
                   "photo at each size (where its time goes, peak memory) and one pass through the command line")
    b.add_argument("--kernel-deblur", dest="kernel_deblur", action="store_true",
                   help="time the kernel-aware deblur (estimate, deconvolution at sigma 2 px, clean-up pass) instead")
    b.add_argument("--peers", action="store_true", help="M3UNet side by side with BM3D, NLM, Real-ESRGAN and "
                   "the U-Net compute of DiffBIR/SUPIR (m3unet/evaluation/field_bench.py)")
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
    b.add_argument("--batch", type=int, default=None, metavar="N",
                   help="instead: restore's throughput on a folder of N small images (images/s, memory per worker) "
                   "with each of --batch-engines (m3unet/cli/batch_bench.py; docs/batch.md)")
    b.add_argument("--batch-side", dest="batch_side", type=int, default=64, help="with --batch: image side in px")
    b.add_argument("--batch-engines", dest="batch_engines", default=None, metavar="ENGINE:WxT[,...]",
                   help="with --batch: settings to compare (default local:1x2,ray:1x2,ray:2x1: engine, workers x "
                   "torch threads)")
    b.add_argument("--batch-mode", dest="batch_mode", choices=["single", "auto"], default="single",
                   help="with --batch: restore mode (default single: one M3UNet pass)")

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
    t.add_argument("--text-sizes", dest="text_sizes", default=None,
                   help="font sizes of the text pages as MIN,MAX px (default 9 to a quarter of the crop)")
    t.add_argument("--width", type=int, default=None, help="base width of the networks")
    t.add_argument("--enc-blocks", dest="enc_blocks", default=None,
                   help="NAF blocks per encoder level, e.g. 1,2,4 (default 1,1,2); with --init from a shallower "
                   "model the extra blocks start as the identity (growth)")
    t.add_argument("--mid-blocks", dest="mid_blocks", type=int, default=None, help="middle NAF blocks (default 2)")
    t.add_argument("--dec-blocks", dest="dec_blocks", default=None, help="NAF blocks per decoder level (default 1,1,1)")
    t.add_argument("--kinds", default=None, help="train on these degradation kinds only, with weights, "
                   "e.g. blur:3,motion:2,noise:1 (a specialist); default: all kinds")
    t.add_argument("--p-mix", dest="p_mix", type=float, default=None,
                   help="share of crops degraded by a mixture of two or three kinds (default 0.4; at most 0.92, "
                   "8%% of crops stay clean)")

    a = sub.add_parser("ablate-dilation", help="the paper's Table 3: train and score refine-layer D=3,4,5,[3,4,5]")
    a.add_argument("--data", default="data/photos")
    a.add_argument("--out", default="runs/ablation", help="one training run per variant in here (resumable)")
    a.add_argument("--steps", type=int, default=1500, help="training budget per variant")
    a.add_argument("--batch", type=int, default=8)
    a.add_argument("--crop", type=int, default=96)
    a.add_argument("--lr", type=float, default=1e-3)
    a.add_argument("--width", type=int, default=None, help="base width (default: the shipped model's)")
    a.add_argument("--threads", type=int, default=1)
    a.add_argument("--settings", default="blur2,motion,noise25,mix", help="validation settings to score")
    a.add_argument("--eval-crop", dest="eval_crop", type=int, default=256, help="centre crop of validation photos")
    a.add_argument("--markdown", default=None, help="write the table here (e.g. docs/table3.md)")
    a.add_argument("--json", default=None)

    c = sub.add_parser("classify", help="detect degradations: one JSON line per image (labels, severity, plan)")
    c.add_argument("inputs", nargs="+", help="image files (PNG/JPEG/WebP...), grey/RGB/RGBA, any size")
    c.add_argument("--classifier", default=None, help="classifier .safetensors (default: the shipped weights)")
    c.add_argument("--threshold", type=float, default=0.5, help="probability (after the classifier file's per-label calibration) from which a label is reported")
    c.add_argument("--no-spectral-motion", action="store_true",
                   help="read motion blur with the classifier alone (by default motion is also read from the "
                        "image's spectrum, as the automatic restore's motion gate does)")

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
    tc.add_argument("--ranges", choices=["train", "wide", "both"], default="train",
                    help="degradation ranges: the training ranges, wider ones in random order "
                    "(m3unet.training.classifier.wide_degradations), or half each (default train)")
    tc.add_argument("--dark", type=float, default=0.0, help="share of regions drawn from the photos' dark parts, "
                    "labels unchanged: a dark scene is not low light")
    tc.add_argument("--dof", type=float, default=0.0, help="share of regions given a shallow depth of field, "
                    "labels unchanged: bokeh is not blur")

    fh = sub.add_parser("fit-classifier-heads", help="second stage: fit the classifier's decision heads on "
                        "cached features of its frozen CNN branches")
    fh.add_argument("--init", required=True, help="classifier .safetensors from train-classifier")
    fh.add_argument("--out", required=True, help="where to write the fitted classifier")
    fh.add_argument("--data", default="data/photos")
    fh.add_argument("--per-photo", dest="per_photo", type=int, default=120, help="degraded regions per training photo")
    fh.add_argument("--ranges", choices=("train", "wide", "both"), default="train",
                    help="degradation ranges of the fitted regions: the training ranges, wider ones in random order "
                         "(m3unet.training.classifier.wide_degradations), or half each (default train)")
    fh.add_argument("--epochs", type=int, default=60)
    fh.add_argument("--spectrum", choices=["on", "off"], default=None, help="the image-level head reads the "
                    "crops' power spectrum (on) or not (off); a change fits a fresh head (default: as the --init file)")
    fh.add_argument("--image-hidden", dest="image_hidden", type=int, default=None,
                    help="hidden units of a fresh image-level head (default: as the --init file)")
    fh.add_argument("--photometric-labels", dest="photometric_labels", default=None,
                    help="labels decided from the colour statistics only, e.g. lowlight (not also in "
                    "--image-labels; a change fits fresh heads; default: as the --init file)")
    fh.add_argument("--min-side", dest="min_side", type=int, default=None,
                    help="record in the file the smallest short side (px) at which its reading is trusted; the "
                    "automatic restore does a blind pass below it (measure with eval --small-sides; default: as "
                    "the --init file)")
    fh.add_argument("--crop-head", dest="crop_head", action="store_true",
                    help="also refit the crop-level head on the cached regions (a third clean)")
    fh.add_argument("--dof", type=float, default=0.0, help="share of regions given a natural shallow depth of "
                    "field (sharp subject, defocused background), labels unchanged: teaches that bokeh is not blur")
    fh.add_argument("--dark", type=float, default=0.0, help="share of regions drawn from the photos' dark parts "
                    "(shadows, night scenes), labels unchanged: teaches that a dark scene is not low light")
    fh.add_argument("--val-pick", dest="val_pick", choices=("last", "spread"), default="last",
                    help="photos that pick the epoch: the last 5 of the training split, or 5 spread over it")
    fh.add_argument("--seed", type=int, default=2)
    fh.add_argument("--threads", type=int, default=1)
    fh.add_argument("--image-labels", dest="image_labels", default=None,
                    help="labels the image-level head decides, e.g. blur,motion,lowres,lowlight (default: the model's)")
    fh.add_argument("--add", action="store_true", help="with --image-labels (old labels first): keep the old "
                    "labels' head exactly and train only the new labels")

    ms = sub.add_parser("set-classifier-min-side", help="record in a classifier file the smallest short side "
                        "its reading is trusted at (measured with eval --small-sides; tensors unchanged)")
    ms.add_argument("classifier", help="classifier .safetensors to update in place")
    ms.add_argument("side", type=int, help="pixels; 0 removes the limit")
    mc = sub.add_parser("set-classifier-calibration", help="record in a classifier file per-label decision offsets "
                        "(logits, chosen on validation images with scripts/calibrate_classifier.py; tensors unchanged)")
    mc.add_argument("classifier", help="classifier .safetensors to update in place")
    mc.add_argument("offsets", help="LABEL=OFFSET[,LABEL=OFFSET...] (a label counts from sigmoid(logit - offset) "
                    ">= the threshold); an empty string removes the calibration")
    ec = sub.add_parser("eval-classifier", help="classifier F1 / severity / clean-pass rate on validation photos")
    ec.add_argument("--classifier", default=None)
    ec.add_argument("--data", default=None, help="prepared photo folder (default: data/photos if present)")
    ec.add_argument("--split", choices=("validation", "holdout", "test"), default="validation",
                   help="photos to measure on: validation (chooses thresholds and rules; the default, and "
                   "the scikit-image photos when nothing is prepared), holdout (never trained on; more scenes "
                   "to check and choose on; needs prepare-data) or test (never used to choose; the "
                   "published figures; needs prepare-data)")
    ec.add_argument("--per-photo", dest="per_photo", type=int, default=40,
                    help="clean, single and mixture samples per validation photo (each)")
    ec.add_argument("--region", type=int, default=256,
                    help="square region size in px (0: the largest square of each photo)")
    ec.add_argument("--seed", type=int, default=0)
    ec.add_argument("--threshold", type=float, default=0.5)
    ec.add_argument("--json", default=None, help="also write the result as JSON here")

    tb = sub.add_parser("train-blur-estimator", help="train the blur estimator of the kernel-aware deblurring "
                        "(Gaussian blur sigma and noise level from grey crops; synthetic degradations)")
    tb.add_argument("--data", default="data/photos")
    tb.add_argument("--out", default="weights/blur-estimator.safetensors")
    tb.add_argument("--steps", type=int, default=3000)
    tb.add_argument("--batch", type=int, default=48)
    tb.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (one-cycle)")
    tb.add_argument("--width", type=int, default=32)
    tb.add_argument("--seed", type=int, default=0)
    tb.add_argument("--threads", type=int, default=2)

    pp = sub.add_parser("policy", help="the automatic restore's thresholds and rules: value, what each decides, "
                        "where its value comes from")
    pp.add_argument("--md", default=None, help="also write the table as Markdown here (e.g. docs/policy.md)")

    d = sub.add_parser("prepare-data", help="gather clean photos from offline sources with a manifest")
    d.add_argument("--out", default="data/photos")
    d.add_argument("--cache", default=None)
    d.add_argument("--max-side", type=int, default=1024)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (ValueError, FileNotFoundError) as e:  # CheckpointError, InputError, unprepared photos: no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    if args.command == "eval" and args.split is None:
        args.split = "test" if args.stress else "validation"
    if args.command == "train":
        from ..training.train import main_args
        main_args(args)
    elif args.command == "train-blur-estimator":
        from ..training.blur_estimator import train_estimator
        train_estimator(args.data, args.out, args.steps, args.batch, args.lr, args.seed, args.threads, args.width)
    elif args.command == "prepare-data":
        from ..training.data import prepare
        m = prepare(args.out, args.cache, args.max_side)
        print(f"wrote {m['counts']} photos and {args.out}/manifest.json")
    elif args.command == "restore":
        from .restore import run
        return run(args)
    elif args.command == "policy":
        from .policy import run
        return run(args)
    elif args.command == "classify":
        from .classify import run
        return run(args)
    elif args.command == "train-classifier":
        from ..training.classifier import main_args
        return main_args(args)
    elif args.command == "fit-classifier-heads":
        from ..training.classifier import fit_main_args
        return fit_main_args(args)
    elif args.command == "set-classifier-min-side":
        from ..auto.classifier import ClassifierError, record_min_side
        try:
            record_min_side(args.classifier, args.side)
        except (ClassifierError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{args.classifier}: min_side {args.side} px")
        return 0
    elif args.command == "set-classifier-calibration":
        from ..auto.classifier import ClassifierError, parse_calibration, record_calibration
        try:
            offsets = parse_calibration(args.offsets)
            record_calibration(args.classifier, offsets)
        except (ClassifierError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{args.classifier}: calibration {offsets or 'removed'}")
        return 0
    elif args.command == "eval-classifier":
        from ..training.classifier import eval_main_args
        return eval_main_args(args)
    elif args.command == "eval" and args.stress:
        from ..evaluation.stress import main_args
        return main_args(args)
    elif args.command == "eval" and args.ocr_pages:
        from ..evaluation.ocr_pages import main_args
        return main_args(args)
    elif args.command == "eval" and args.rules:
        from ..evaluation.rules import main_args
        return main_args(args)
    elif args.command == "eval" and args.peers:
        from ..evaluation.field import main_args
        return main_args(args)
    elif args.command == "eval" and (args.ocr or args.ocr_validation):
        from ..evaluation.ocr import main_args
        return main_args(args)
    elif args.command == "eval":
        from ..evaluation.quality import main_args
        return main_args(args)
    elif args.command == "ablate-dilation":
        from ..evaluation.ablation import main_args
        args.command = "python -m m3unet ablate-dilation " + " ".join(sys.argv[2:])
        return main_args(args)
    elif args.command == "plan-orders":
        from ..evaluation.orders import DEFAULT_MD, DEFAULT_OUT, main_args
        args.out = args.out or DEFAULT_OUT
        args.md = DEFAULT_MD if args.md is None else args.md
        return main_args(args)
    elif args.command == "bench" and args.batch is not None:
        from .batch_bench import main_args
        return main_args(args)
    elif args.command == "bench" and args.peers:
        from ..evaluation.field_bench import main_args
        return main_args(args)
    elif args.command == "bench":
        from ..evaluation.bench import main_args
        return main_args(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
