"""Training of the kernel-aware deblur's blur estimator (:class:`m3unet.auto.deblur.BlurEstimator`).

Synthetic Gaussian blur, noise and JPEG on crops of the training photos; the learned blur-parameter
regression of Yan & Shao, "Blind image blur estimation via deep learning" (IEEE TIP 2016).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..auto.deblur import CROP, NOISE_UNIT, BlurEstimator, BlurEstimatorError, grey
from .data import load_split
from .provenance import git_commit
from . import synthesis as deg


def save_estimator(model: BlurEstimator, path, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file
    meta = {"m3unet_blur_estimator": json.dumps({"width": model.width, "crop": CROP})}
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)



def synth_batch(photos: list[np.ndarray], n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` grey 64 px crops with random Gaussian blur (none in 15 %), noise and JPEG; targets
    ``[n, 2]`` (blur sigma px, noise sigma 1/255)."""
    crops, targets = [], []
    pad = 16
    while len(crops) < n:
        a = photos[int(torch.randint(len(photos), (), generator=gen))]
        scale = float(0.5 + 0.5 * torch.rand((), generator=gen))
        side = int((CROP + 2 * pad) / scale) + 1
        h, w = a.shape[:2]
        if h < side or w < side:
            continue
        y0 = int(torch.randint(h - side + 1, (), generator=gen))
        x0 = int(torch.randint(w - side + 1, (), generator=gen))
        x = torch.from_numpy(np.ascontiguousarray(a[y0:y0 + side, x0:x0 + side])).permute(2, 0, 1).float() / 255
        x = F.interpolate(x[None], size=(CROP + 2 * pad,) * 2, mode="bicubic", antialias=True,
                          align_corners=False)[0].clamp(0, 1)
        r = float(torch.rand((), generator=gen))
        sigma = 0.0 if r < 0.15 else float(0.3 + 3.3 * torch.rand((), generator=gen))
        if sigma > 0:
            x = deg.convolve(x, deg.gaussian_kernel(sigma))
        noise = 0.0 if float(torch.rand((), generator=gen)) < 0.25 else float(25 * torch.rand((), generator=gen) ** 1.5)
        x = (x + noise / 255 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
        if float(torch.rand((), generator=gen)) < 0.4:
            x = deg.jpeg(x, int(torch.randint(25, 96, (), generator=gen)))
        crops.append(grey(x[:, pad:pad + CROP, pad:pad + CROP]))
        targets.append((sigma, noise))
    return torch.stack(crops), torch.tensor(targets, dtype=torch.float32)


def train_estimator(data: str = "data/photos", out: str = "weights/blur-estimator.safetensors", steps: int = 3000,
                    batch: int = 48, lr: float = 1e-3, seed: int = 0, threads: int = 2, width: int = 32,
                    log: Callable[[str], None] = print) -> dict:
    """Train :class:`BlurEstimator` on synthetic blur of the training photos (held-out ones never seen);
    writes the weights, a JSONL log and returns the held-out validation errors."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    photos = list(load_split(Path(data), "train").values())
    if not photos:
        raise BlurEstimatorError(f"no training photos under {data}; run `python -m m3unet prepare-data` first")
    held = list(load_split(Path(data), "validation").values())
    gen = torch.Generator().manual_seed(seed)
    model = BlurEstimator(width)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    val = synth_batch(held, 512, torch.Generator().manual_seed(12345)) if held else None
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    log_path = out_path.with_suffix(".train-log.jsonl")
    logf = open(log_path, "w")
    t0 = time.time()
    result: dict = {}
    for step in range(1, steps + 1):
        model.train()
        xb, tb = synth_batch(photos, batch, gen)
        pred = model(xb)
        loss = ((pred - tb).abs() / NOISE_UNIT).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps:
            rec = {"step": step, "loss": round(float(loss.detach()), 4), "sec": round(time.time() - t0, 1)}
            if val is not None and (step % 250 == 0 or step == steps):
                rec.update(validate(model, *val))
                result = rec
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            log(json.dumps(rec))
    logf.close()
    config = {"data": data, "steps": steps, "batch": batch, "lr": lr, "seed": seed, "threads": threads, "width": width}
    save_estimator(model, out_path, {"config": json.dumps(config), "validation": json.dumps(result)})
    write_estimator_card(out_path, config, result, time.time() - t0)
    return result


def write_estimator_card(out: Path, config: dict, result: dict, seconds: float, command: str | None = None) -> Path:
    """The model card next to the weights: command, commit, config, validation, data manifest."""
    import sys

    manifest_path = Path(config["data"]) / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"photos": []}
    rows = "\n".join(f"| {p['id']} | {p['split']} | {p['source']} | {p['licence']} | `{p['original_sha256'][:16]}` |"
                     for p in manifest["photos"])
    command = command or "python -m m3unet " + " ".join(sys.argv[1:])
    card = Path(out).with_suffix(".md")
    card.write_text(f"""# Blur estimator: model card

The estimator of the kernel-aware deblur (`m3unet/auto/deblur.py`): grey 64 px crops -> Gaussian blur
sigma (px) and noise sigma (1/255); the image's reading is the median over its most textured crops.

- Trained by: `{command}` (this repository, commit `{git_commit()}`), {seconds / 60:.0f} minutes on the 2-core CPU
- Config: `{json.dumps(config)}`
- Training data: random crops of the training photos, rescaled by 0.5-1, Gaussian blur sigma 0.3-3.6 px
  (none in 15 %), Gaussian noise 0-25/255 (none in 25 %), JPEG q25-95 in 40 %.
- Validation (512 synthetic crops of the held-out photos, single crops, not the image-level median):
  `{json.dumps(result)}` (sigma error on blurred crops in px; mean reading on unblurred crops; noise error in 1/255)
- Log: `{Path(out).with_suffix(".train-log.jsonl").name}`

| photo | split | source | licence | original sha256 |
|---|---|---|---|---|
{rows}
""")
    return card


@torch.no_grad()
def validate(model: BlurEstimator, crops: torch.Tensor, targets: torch.Tensor) -> dict:
    """Mean absolute error of blur sigma (px, on blurred crops) and noise (1/255) on synthetic held-out crops."""
    model.eval()
    p = model(crops)
    blurred = targets[:, 0] > 0
    return {"val_sigma_mae": round(float((p[blurred, 0] - targets[blurred, 0]).abs().mean()), 3),
            "val_sigma_none": round(float(p[~blurred, 0].mean()), 3),
            "val_noise_mae": round(float((p[:, 1] - targets[:, 1]).abs().mean()), 3)}
