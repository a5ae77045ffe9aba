"""Training M3UNet on synthetic degradations of clean photos (paper Sec. 4.1 recipe as defaults).

Defaults follow the paper: Adam (0.9, 0.999), lr 1e-4 halved every 1000 iterations, batch 10,
256x256 crops, flips/rot90, Gaussian-noise augmentation (std 1e-4) and the L1 (MAE) loss.
CPU budgets override them (smaller crops, larger lr, longer half-life). Degradations are drawn
on the fly (:mod:`m3unet.training.synthesis`) with varied restoration text (:mod:`m3unet.core.text`).
An exponential moving average of the weights is what gets saved and shipped.

Outputs in ``--out``: ``state.safetensors`` (model, EMA, Adam moments; resumable),
``model.safetensors`` (EMA weights, with config and training metadata), ``log.jsonl`` and
``MODEL_CARD.md`` (data manifest, command, commit, metrics).
"""
from __future__ import annotations

import copy
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from . import synthesis as deg
from ..core import diffusion
from .data import load_split
from .provenance import git_commit
from .data import center_crop
from ..core.metrics import psnr
from ..core.text import TextEncoder, describe, training_text
from ..core.unet import M3UNet, M3UNetConfig
from ..core.weights import read_metadata, save_model


@dataclass
class TrainConfig:
    data: str = "data/photos"
    out: str = "runs/default"
    steps: int = 3000
    batch: int = 10
    crop: int = 256
    lr: float = 1e-4
    lr_half_every: int = 1000
    min_lr: float = 1e-6
    ema: float = 0.999
    aug_noise: float = 1e-4
    p_one_step: float = 0.5
    loss: str = "l1"          # "l1" (paper) or "psnr" (per-sample -PSNR, NAFNet; balances tasks)
    text_fraction: float = 0.0  # share of crops that are rendered text pages (m3unet.training.textimage)
    text_sizes: tuple = ()  # (min, max) font size of text pages in px; empty: 9 .. max(12, crop // 4)
    kinds: dict = field(default_factory=dict)  # degradation kind -> weight; empty: all (TRAIN_WEIGHTS)
    p_mix: float = 0.4  # share of crops with a mixture of two or three kinds (degradation.sample)
    val_every: int = 500
    save_every: int = 250
    seed: int = 0
    threads: int = 2
    resume: str = ""
    init: str = ""
    model: dict = field(default_factory=dict)


class CropSampler:
    """Random crops with flips/rot90 from in-memory photos (photo chosen in proportion to area)."""

    def __init__(self, photos: dict[str, np.ndarray], crop: int, gen: torch.Generator,
                 text_fraction: float = 0.0, text_sizes: tuple = ()):
        self.text_fraction = text_fraction
        self.text_sizes = tuple(text_sizes) or (9, max(12, crop // 4))
        if len(self.text_sizes) != 2 or not 4 <= self.text_sizes[0] <= self.text_sizes[1]:
            raise ValueError(f"text sizes must be two font sizes MIN,MAX with 4 <= MIN <= MAX; got {text_sizes}")
        self.images = [torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1) for a in photos.values()
                       if min(a.shape[:2]) >= crop]
        if not self.images:
            raise ValueError(f"no training photo is at least {crop}px on its short side")
        areas = torch.tensor([float(im.shape[1] * im.shape[2]) for im in self.images])
        self.p = areas.sqrt() / areas.sqrt().sum()
        self.crop = crop
        self.gen = gen

    def __call__(self) -> torch.Tensor:
        if self.text_fraction > 0 and float(torch.rand((), generator=self.gen)) < self.text_fraction:
            from .textimage import render_page
            seed = int(torch.randint(0, 2 ** 31 - 1, (), generator=self.gen))  # eval pages use seeds < 0
            page, _ = render_page(self.crop, self.crop, seed=seed + 1_000_000, min_size=self.text_sizes[0],
                                  max_size=self.text_sizes[1])
            return torch.from_numpy(page).permute(2, 0, 1).float() / 255
        im = self.images[int(torch.multinomial(self.p, 1, generator=self.gen))]
        _, h, w = im.shape
        y = int(torch.randint(0, h - self.crop + 1, (), generator=self.gen))
        x = int(torch.randint(0, w - self.crop + 1, (), generator=self.gen))
        c = im[:, y:y + self.crop, x:x + self.crop].float() / 255
        k = int(torch.randint(0, 8, (), generator=self.gen))
        if k & 4:
            c = c.flip(-1)
        return torch.rot90(c, k & 3, (1, 2)).contiguous()


def make_batch(sampler: CropSampler, n: int, gen: torch.Generator, rng: random.Random, aug_noise: float,
               kinds: dict[str, float] | None = None, p_mix: float = 0.4):
    """Clean crops, degraded crops, texts and the degradation lists of one training batch."""
    hq, lq, texts, degs = [], [], [], []
    for _ in range(n):
        x = sampler()
        d = deg.sample(gen, weights=kinds or None, p_mix=p_mix)
        y = deg.apply(x, d, gen)
        if aug_noise > 0:
            y = y + aug_noise * torch.randn(y.shape, generator=gen)
        hq.append(x)
        lq.append(y)
        texts.append(training_text(d, rng))
        degs.append(d)
    return torch.stack(hq), torch.stack(lq), texts, degs


# The eval settings validation reports. lowres2x draws no random numbers, so the other settings'
# crops and figures are the same with or without it (training logs stay comparable).
VALIDATION_SETTINGS = ("noise25", "blur2", "jpeg15", "mix", "lowres2x")


def validation_set(data: Path, crop: int = 128, per_setting: int = 6) -> list[tuple[str, torch.Tensor, torch.Tensor, str]]:
    """Fixed held-out validation crops: (setting, clean, degraded, canonical text)."""
    photos = load_split(data, "validation")
    settings = {k: v for k, v in deg.eval_settings().items() if k in VALIDATION_SETTINGS}
    out = []
    g = torch.Generator().manual_seed(123)
    names = sorted(photos)[:per_setting]
    for name in names:
        x = center_crop(photos[name], crop)
        for sname, d in settings.items():
            out.append((sname, x, deg.apply(x, d, g), describe(d)))
    return out


@torch.no_grad()
def validate(model: M3UNet, val, encoder: TextEncoder) -> dict[str, float]:
    """Mean PSNR per setting at one step, with the canonical restoration text."""
    model.eval()
    res: dict[str, list[float]] = {}
    for sname, x, y, text in val:
        yb = y[None].contiguous(memory_format=torch.channels_last)
        emb = model.refine.embed(yb, size=y.shape[-1])
        pred = model(yb, torch.ones(1), encoder.encode([text]), emb, model.refine.features(yb))
        res.setdefault(sname, []).append(psnr(pred.clamp(0, 1)[0], x))
        res.setdefault(sname + "_in", []).append(psnr(y, x))
    model.train()
    return {k: round(float(np.mean(v)), 3) for k, v in res.items()}


def loss_fn(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Training loss: ``l1`` (paper Sec. 4.1) or ``psnr``, the mean per-sample ``10 log10(MSE)``.

    The PSNR loss (as in NAFNet, Chen et al. 2022) weights each sample by the inverse of its
    error, so small residuals (blur, JPEG) are not drowned by large ones (heavy noise).
    """
    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "psnr":
        mse = (pred - target).pow(2).flatten(1).mean(1)
        return 10 * torch.log10(mse + 1e-5).mean()
    raise ValueError(f"unknown loss {kind!r}: use 'l1' or 'psnr'")


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Step decay: ``lr * 0.5 ** (step // lr_half_every)``, floored at ``min_lr``."""
    return max(cfg.min_lr, cfg.lr * 0.5 ** (step // max(1, cfg.lr_half_every)))


def _save_state(path: Path, model, ema, opt, step: int, cfg: TrainConfig) -> None:
    tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v.contiguous() for k, v in ema.state_dict().items()})
    names = {p: n for n, p in model.named_parameters()}
    for p, st in opt.state.items():
        for key in ("exp_avg", "exp_avg_sq"):
            tensors[f"opt.{key}.{names[p]}"] = st[key].contiguous()
    meta = {"step": str(step), "train_config": json.dumps(asdict(cfg)), "m3unet_config": model.config.to_json()}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def _load_state(path: Path, model, ema, opt) -> int:
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    step = int(read_metadata(path)["step"])
    for n, p in model.named_parameters():
        if f"opt.exp_avg.{n}" in tensors:
            opt.state[p] = {"step": torch.tensor(float(step)), "exp_avg": tensors[f"opt.exp_avg.{n}"],
                            "exp_avg_sq": tensors[f"opt.exp_avg_sq.{n}"]}
    return step


def write_model_card(out: Path, cfg: TrainConfig, step: int, metrics: dict, command: str) -> None:
    manifest_path = Path(cfg.data) / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"photos": []}
    rows = "\n".join(f"| {p['id']} | {p['split']} | {p['source']} | {p['licence']} | `{p['original_sha256'][:16]}` |"
                     for p in manifest["photos"])
    (out / "MODEL_CARD.md").write_text(f"""# M3UNet weights: model card

- Trained by: `python -m m3unet train` (this repository), commit `{git_commit()}`
- Command: `{command}`
- Steps: {step}; config: `{json.dumps(asdict(cfg))}`
- Architecture: `{json.dumps(json.loads(M3UNetConfig(**cfg.model).to_json()) if cfg.model else json.loads(M3UNetConfig().to_json()))}`
- Validation (held-out photos, 1 step, canonical text, PSNR dB): `{json.dumps(metrics)}`
- Data: {manifest.get('counts', {})} photos gathered offline by `python -m m3unet prepare-data`
  (photos are not committed). Held-out photos are never used in training.

| photo | split | source | licence | original sha256 |
|---|---|---|---|---|
{rows}
""")


def train(cfg: TrainConfig, command: str = "") -> Path:
    """Train (or resume) and return the path of the EMA model file."""
    if not 0.0 <= cfg.p_mix <= 0.92:
        raise ValueError(f"--p-mix must be between 0 and 0.92 (8% of crops stay clean); got {cfg.p_mix}")
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    if cfg.resume:  # the state's own architecture; flags may not change it
        saved = json.loads(read_metadata(Path(cfg.resume)).get("m3unet_config", "{}") or "{}")
        if saved:
            wanted = asdict(M3UNetConfig.from_dict(saved | dict(cfg.model)))
            if wanted != asdict(M3UNetConfig.from_dict(saved)):
                changed = sorted(k for k in wanted if wanted[k] != saved.get(k))
                raise ValueError(f"--resume {cfg.resume}: the state was saved with another architecture "
                                 f"({', '.join(f'{k}={saved.get(k)}' for k in changed)}); drop those flags, "
                                 "or start a new run with --init <its model.safetensors> to grow it")
            cfg.model = saved
    init = None
    if cfg.init:  # continue from shipped/committed weights with a fresh optimizer
        from ..core.weights import load_model
        init = load_model(cfg.init)
        # The init's architecture, with what the flags change (e.g. more blocks: growth).
        cfg.model = asdict(init.config) | dict(cfg.model)
    model = M3UNet(M3UNetConfig(**cfg.model)).to(memory_format=torch.channels_last)
    step = 0
    if init is not None:
        if init.config == model.config:
            model.load_state_dict(init.state_dict())
        else:  # a deeper model: the init's blocks plus identity blocks (M3UNet.grow_from)
            new = model.grow_from(init)
            print(f"grown from {cfg.init}: {len(new)} new tensors "
                  f"({sum(model.state_dict()[k].numel() for k in new)} values), starting as the identity", flush=True)
        step = int(getattr(init, "metadata", {}).get("step", 0))
        print(f"initialised from {cfg.init} at step {step} (fresh optimizer)", flush=True)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    state_path = out / "state.safetensors"
    if cfg.resume:
        step = _load_state(Path(cfg.resume), model, ema, opt)
        print(f"resumed from {cfg.resume} at step {step}", flush=True)
    if step:  # new random stream, so a continued run does not replay the data it has seen
        gen.manual_seed(cfg.seed + step)
        rng.seed(cfg.seed + step)
    encoder = TextEncoder()
    sampler = CropSampler(load_split(Path(cfg.data), "train"), cfg.crop, gen, cfg.text_fraction, cfg.text_sizes)
    val = validation_set(Path(cfg.data))
    log = open(out / "log.jsonl", "a")
    metrics: dict = {}
    t0, losses = time.time(), []
    model.train()
    while step < cfg.steps:
        lr = lr_at(cfg, step)
        for group in opt.param_groups:
            group["lr"] = lr
        hq, lq, texts, _ = make_batch(sampler, cfg.batch, gen, rng, cfg.aug_noise, cfg.kinds, cfg.p_mix)
        t = diffusion.sample_times(cfg.batch, gen, cfg.p_one_step)
        x_t = diffusion.q_sample(hq, lq, t, torch.randn(hq.shape, generator=gen))
        cl = torch.channels_last
        lq_c, x_t = lq.contiguous(memory_format=cl), x_t.contiguous(memory_format=cl)
        pred = model(x_t, t, encoder.encode(texts), model.refine.embed(lq_c, size=cfg.crop),
                     model.refine.features(lq_c))
        loss = loss_fn(cfg.loss, pred, hq)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(cfg.ema, (1 + step) / (10 + step))  # EMA warm-up: early averages track the model
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        step += 1
        losses.append(loss.item())
        if step % 50 == 0:
            rec = {"step": step, "loss": round(float(np.mean(losses)), 5), "lr": lr,
                   "sec_per_step": round((time.time() - t0) / len(losses), 3)}
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            t0, losses = time.time(), []
        if step % cfg.val_every == 0 or step == cfg.steps:
            metrics = validate(ema, val, encoder)
            rec = {"step": step, "val_psnr": metrics}
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if step % cfg.save_every == 0 or step == cfg.steps:
            _save_state(state_path, model, ema, opt, step, cfg)
            save_model(ema, out / "model.safetensors",
                       {"step": step, "val_psnr": json.dumps(metrics), "commit": git_commit(), "command": command})
            write_model_card(out, cfg, step, metrics, command)
    return out / "model.safetensors"


def main_args(args) -> None:
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None})
    if args.dilations:
        cfg.model = dict(cfg.model, dilations=[int(d) for d in args.dilations.split(",")])
    if args.width:
        cfg.model = dict(cfg.model, width=args.width)
    for key in ("enc_blocks", "dec_blocks"):  # "1,2,4" -> [1, 2, 4]
        if getattr(args, key, None):
            cfg.model = dict(cfg.model, **{key: [int(n) for n in getattr(args, key).split(",")]})
    if getattr(args, "mid_blocks", None):
        cfg.model = dict(cfg.model, mid_blocks=args.mid_blocks)
    if getattr(args, "text_sizes", None):  # "14,40" -> (14, 40)
        cfg.text_sizes = tuple(int(n) for n in args.text_sizes.split(","))
    if args.kinds:  # "blur:3,motion:2,noise" -> {"blur": 3.0, "motion": 2.0, "noise": 1.0}
        cfg.kinds = {k.split(":")[0]: float(k.split(":")[1]) if ":" in k else 1.0 for k in args.kinds.split(",")}
    train(cfg, command="python -m m3unet train " + " ".join(sys.argv[2:]))
