"""``python -m m3unet bench --peers``: speed and memory of M3UNet and its peers, side by side.

Every method runs in a fresh subprocess of the same run (so its peak resident memory,
``ru_maxrss``, is its own), on the same CPU, one after another; the table reports seconds per
image, seconds per megapixel, peak RSS and each peer's time as a multiple of M3UNet's at the
default steps. Seconds are the worker process's CPU time by default (``clock="cpu"``): on a
machine shared with other jobs, wall time swings with their load while CPU time does not; with
one thread it is what the wall time would be on an idle core. Threads: torch (M3UNet, the
U-Nets) and ncnn (Real-ESRGAN) get ``threads`` (2 by default, the machine's cores); scikit-image
NLM and BM3D run their own single-threaded code.
Every timed call follows a warm-up call, except NLM and BM3D (no one-time costs).

Methods and what is measured:

* M3UNet at 1 step and at the default steps (:func:`m3unet.evaluation.bench.worker`).
* BM3D (``bm3d.bm3d_rgb``, true sigma 25/255) and scikit-image non-local means: a held-out
  photo resized to the size, with noise. BM3D is measured at ``bm3d_size`` px and scaled by the
  pixel count (it works on overlapping blocks, so its time is linear in the pixels).
* Real-ESRGAN x4plus (ncnn on the CPU, 192 px tiles): the x4 upscale of an ``N/4`` input to an
  ``N`` px image, measured on inputs up to ``resr_max_input`` px and scaled by pixels beyond.
* Diffusion peers' U-Net compute: an SD 1.5-sized and an SDXL-sized ``UNet2DConditionModel``
  (diffusers, the published configurations, random weights: the same compute as the real ones)
  for one denoising step at a ``latent`` x ``latent`` latent (8x smaller than the image), timed
  after one warm-up step, then scaled to the image's latent by pixels (tiled sampling) and
  multiplied by the published step counts (DiffBIR 50, SUPIR 50). Left out, so the estimate is a
  lower bound: classifier-free guidance (a second U-Net pass per step), the ControlNet /
  adapter branches, the VAE, and the caption model (SUPIR's LLaVA).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..restore.pipeline import DEFAULT_STEPS

REPO = Path(__file__).resolve().parents[2]
NOISE_SIGMA = 25 / 255
DIFFUSION_STEPS = {"sd15": 50, "sdxl": 50}
DIFFUSION_LABEL = {"sd15": "DiffBIR (SD-sized U-Net, 50 steps)", "sdxl": "SUPIR (SDXL-sized U-Net, 50 steps)"}

# The published U-Net configurations (diffusers UNet2DConditionModel keyword arguments).
UNET_CONFIGS = {
    # Stable Diffusion 1.5: the diffusers defaults with CLIP ViT-L text features (768).
    "sd15": dict(sample_size=64, cross_attention_dim=768, attention_head_dim=8),
    # Stable Diffusion XL base 1.0.
    "sdxl": dict(sample_size=128, block_out_channels=(320, 640, 1280), cross_attention_dim=2048,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10),
                 use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816),
}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _photo(size: int) -> torch.Tensor:
    """A held-out photo (scikit-image astronaut, shipped in the package) resized to size x size."""
    from skimage import data
    x = torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1).float()[None] / 255
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def build_unet(kind: str, config: dict | None = None):
    """A diffusers U-Net of the given published size with random N(0, 0.02) weights (built fast on 'meta')."""
    from diffusers import UNet2DConditionModel
    with torch.device("meta"):
        unet = UNet2DConditionModel(**(config or UNET_CONFIGS[kind]))
    unet = unet.to_empty(device="cpu")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in unet.parameters():
            p.normal_(0, 0.02, generator=g)
        for b in unet.buffers():
            b.zero_()
    return unet.eval()


def unet_step_seconds(unet, latent: int) -> tuple[float, float]:
    """Wall and CPU seconds of one denoising step (one U-Net call, batch 1) at a latent x latent latent.

    Timed after one warm-up call.
    """
    cfg = unet.config
    x = torch.randn(1, cfg.in_channels, latent, latent)
    ctx = torch.randn(1, 77, cfg.cross_attention_dim)
    kw = {}
    if cfg.addition_embed_type == "text_time":
        n_text = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        s = float(latent * 8)
        kw["added_cond_kwargs"] = {"text_embeds": torch.randn(1, n_text),
                                   "time_ids": torch.tensor([[s, s, 0.0, 0.0, s, s]])}
    with torch.inference_mode():
        unet(x, 500, ctx, **kw)
        t0, c0 = time.perf_counter(), time.process_time()
        out = unet(x, 500, ctx, **kw).sample
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    if not torch.isfinite(out).all():
        raise RuntimeError("the U-Net produced non-finite values; the timing would not be representative")
    return sec, cpu


def worker(method: str, size: int, model: str | None = None, threads: int = 2) -> dict:
    """Measure one method at one size in this process; returns seconds and peak RSS (MB)."""
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    if method.startswith("m3unet"):
        from .bench import worker as m3unet_worker
        r = m3unet_worker(size, int(method.split("-")[1]), model, threads, warmup=True)
        return {"wall": r["seconds"], "cpu": r["cpu_seconds"], "peak_rss_mb": r["peak_rss_mb"]}
    if method in ("bm3d", "nlm"):
        from .quality import baseline
        g = torch.Generator().manual_seed(0)
        y = (_photo(size) + NOISE_SIGMA * torch.randn(3, size, size, generator=g)).clamp(0, 1)
        t0, c0 = time.perf_counter(), time.process_time()
        baseline(method, y, NOISE_SIGMA)
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    elif method == "realesrgan":
        from .peers import ncnn_upscale
        x = _photo(size)
        ncnn_upscale("realesrgan", x[:, :16, :16], threads=threads)  # load the model before timing
        t0, c0 = time.perf_counter(), time.process_time()
        ncnn_upscale("realesrgan", x, threads=threads)
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    elif method in UNET_CONFIGS:
        sec, cpu = unet_step_seconds(build_unet(method), size)
    else:
        raise ValueError(f"unknown method {method!r}")
    return {"wall": round(sec, 3), "cpu": round(cpu, 3), "peak_rss_mb": round(_peak_mb())}


def _measure(method: str, size: int, model: str | None, threads: int, log) -> dict:
    code = ("import json; from m3unet.evaluation.field_bench import worker; "
            f"print(json.dumps(worker({method!r}, {size}, {model!r}, {threads})))")
    t0 = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"bench worker {method} at {size} failed:\n{proc.stderr[-2000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    log(f"  measured {method} at {size}: {r['wall']} s wall, {r['cpu']} s CPU, peak {r['peak_rss_mb']} MB "
        f"({time.time() - t0:.0f} s with start-up)")
    return r


def run(sizes: list[int], model: str | None = None, steps: int = DEFAULT_STEPS,
        methods: tuple[str, ...] = ("m3unet", "bm3d", "nlm", "realesrgan", "sd15", "sdxl"),
        bm3d_size: int = 256, resr_max_input: int = 256, latent: int = 64, threads: int = 2,
        clock: str = "cpu", log=print) -> dict:
    """Measure every method and return ``{"rows": [...], "settings": {...}}``; rows are per method and size.

    ``clock`` chooses what the table's seconds are: ``cpu`` (the process's CPU time: robust when
    other jobs share the machine; with one thread it equals the wall time on an idle core) or
    ``wall``. Both are kept in the rows.
    """
    if clock not in ("cpu", "wall"):
        raise ValueError(f"clock must be 'cpu' or 'wall'; got {clock!r}")
    rows: list[dict] = []

    def row(method, label, size, r, factor, how, estimate):
        sec = r[clock] * factor
        rows.append({"method": method, "label": label, "size": size, "seconds": round(sec, 2),
                     "sec_per_mp": round(sec / (size * size / 1e6), 2), "wall_seconds": round(r["wall"] * factor, 2),
                     "cpu_seconds": round(r["cpu"] * factor, 2), "peak_rss_mb": r["peak_rss_mb"],
                     "how": how, "estimate": estimate})

    step_list = sorted({1, steps})
    for m in methods:
        log(f"{m}:")
        if m == "m3unet":
            for n in step_list:
                for s in sizes:
                    r = _measure(f"m3unet-{n}", s, model, threads, log)
                    row(f"m3unet-{n}", f"M3UNet, {n} step{'s' if n > 1 else ''}", s, r, 1, f"{s} px image", False)
        elif m in ("bm3d", "nlm"):
            cache: dict[int, dict] = {}
            for s in sizes:
                ms = min(s, bm3d_size) if m == "bm3d" else s
                r = cache[ms] = cache.get(ms) or _measure(m, ms, model, threads, log)
                label = "BM3D (true sigma)" if m == "bm3d" else "scikit-image NLM (true sigma)"
                how = f"{ms} px image" + (f", x{(s / ms) ** 2:g} pixels" if ms != s else "")
                row(m, label, s, r, (s / ms) ** 2, how, ms != s)
        elif m == "realesrgan":
            cache = {}
            for s in sizes:
                ins = max(1, s // 4)
                ms = min(ins, resr_max_input)
                r = cache[ms] = cache.get(ms) or _measure(m, ms, model, threads, log)
                how = f"x4 of a {ms} px input" + (f", x{(ins / ms) ** 2:g} pixels" if ms != ins else "")
                row(m, "Real-ESRGAN x4plus (N/4 px in, N px out)", s, r, (ins / ms) ** 2, how, ms != ins)
                # The same network as a same-size restorer (N px in, x4, resized back): 16x the pixels.
                row("realesrgan-same", "Real-ESRGAN x4plus as restorer (N px in, x4, back to N)", s, r,
                    (s / ms) ** 2, f"x4 of a {ms} px input, x{(s / ms) ** 2:g} pixels", True)
        elif m in UNET_CONFIGS:
            r = _measure(m, latent, model, threads, log)
            for s in sizes:
                lat = s // 8
                factor = (lat / latent) ** 2 * DIFFUSION_STEPS[m]
                row(m, DIFFUSION_LABEL[m], s, r, factor,
                    f"1 U-Net step at {latent}x{latent} latent = {r[clock]:.1f} s, x{(lat / latent) ** 2:g} "
                    f"pixels, x{DIFFUSION_STEPS[m]} steps", True)
        else:
            raise ValueError(f"unknown method {m!r}; choose from m3unet, bm3d, nlm, realesrgan, sd15, sdxl")
    ref = {r["size"]: r["seconds"] for r in rows if r["method"] == f"m3unet-{steps}"}
    for r in rows:
        r["x_m3unet"] = round(r["seconds"] / ref[r["size"]], 1) if r["size"] in ref else None
    return {"rows": rows, "settings": {"sizes": sizes, "steps": steps, "bm3d_size": bm3d_size,
                                       "resr_max_input": resr_max_input, "latent": latent, "threads": threads,
                                       "clock": clock, "torch": torch.__version__}}


def _fmt_sec(s: float) -> str:
    return f"{s:.2f}" if s < 10 else f"{s:.0f}"


def to_markdown(result: dict) -> str:
    """One row per method: seconds per image (and multiple of M3UNet's) at each size, s/MP, peak RSS."""
    rows, sizes = result["rows"], result["settings"]["sizes"]
    unit = "CPU s" if result["settings"].get("clock") == "cpu" else "s"
    out = ["| method | " + " | ".join(f"{s} px: {unit} (x M3UNet)" for s in sizes)
           + f" | {unit} / MP at {sizes[-1]} px | peak RSS (MB) | how measured (largest size) |",
           "|---|" + "---|" * (len(sizes) + 3)]
    for method in dict.fromkeys(r["method"] for r in rows):
        by = {r["size"]: r for r in rows if r["method"] == method}
        cells = []
        for s in sizes:
            r = by[s]
            mark = "~" if r["estimate"] else ""
            cells.append(f"{mark}{_fmt_sec(r['seconds'])} ({r['x_m3unet']:g}x)")
        last = by[sizes[-1]]
        peak = max(r["peak_rss_mb"] for r in by.values())
        out.append(f"| {last['label']} | " + " | ".join(cells)
                   + f" | {last['sec_per_mp']:g} | {peak} | {last['how']} |")
    return "\n".join(out) + "\n"


def plot(result: dict, path: str) -> None:
    """Bar chart of seconds per image (log scale) for each method at each size."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows, sizes = result["rows"], result["settings"]["sizes"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    labels = {r["method"]: r["label"] for r in rows}
    fig, ax = plt.subplots(figsize=(9, 0.21 * len(methods) * len(sizes) + 1.4))
    h = 0.8 / len(sizes)
    for j, s in enumerate(sizes):
        vals = [next(r["seconds"] for r in rows if r["method"] == m and r["size"] == s) for m in methods]
        ys = np.arange(len(methods)) + j * h
        ax.barh(ys, vals, height=h, label=f"{s} px", color=plt.cm.viridis(0.2 + 0.6 * j / max(1, len(sizes) - 1)))
    ax.set_yticks(np.arange(len(methods)) + h * (len(sizes) - 1) / 2)
    ax.set_yticklabels([labels[m] for m in methods], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    unit = "CPU seconds" if result["settings"].get("clock") == "cpu" else "seconds"
    ax.set_xlabel(f"{unit} per image, {result['settings']['threads']} thread(s) (log scale; diffusion peers and "
                  "scaled sizes are estimates)", fontsize=8)
    ax.legend(title="image size", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main_args(args) -> int:
    sizes = [int(s) for s in (args.sizes or "512,1024,2048").split(",")]
    methods = tuple(m for m in (args.methods or "m3unet,bm3d,nlm,realesrgan,sd15,sdxl").split(",") if m)
    result = run(sizes, args.model, args.steps or DEFAULT_STEPS, methods, args.bm3d_size, args.resr_max_input,
                 args.latent, args.threads, args.clock)
    print("\n" + to_markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.plot:
        plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0
