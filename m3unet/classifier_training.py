"""Training and evaluating the DegradationClassifier on synthetic degradations of clean photos.

:func:`train_classifier` trains it (BCE on the labels, L1 on the severities of the
labels present) on random regions of the training photos; :func:`evaluate_classifier` measures,
on held-out photos, per-label F1 on single degradations and on mixtures of two or three, the
share of severities within one level, and the share of clean photos with no label.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import degradation as deg
from .classify import LABELS, ClassifierConfig, Classifier, DegradationClassifier, save_classifier, targets, views
from .data import load_split
from .degradation import level


def _region(photo: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    _, h, w = photo.shape
    s = min(size, h, w)
    y = int(torch.randint(0, h - s + 1, (), generator=gen))
    x = int(torch.randint(0, w - s + 1, (), generator=gen))
    return photo[:, y:y + s, x:x + s].float() / 255


def _photos(data: Path, split: str) -> list[torch.Tensor]:
    return [torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1) for a in load_split(data, split).values()]


def train_classifier(data: str = "data/photos", out: str = "runs/classifier", steps: int = 3000, batch: int = 16,
                     lr: float = 1e-3, region: int = 256, seed: int = 0, threads: int = 2, log=print) -> Path:
    """Train and save ``out/classifier.safetensors``; returns its path."""
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(seed)
    photos = _photos(Path(data), "train")
    model = DegradationClassifier()
    cfg = model.config
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    t0, losses = time.time(), []
    for step in range(1, steps + 1):
        crops, wholes, ys, ss = [], [], [], []
        for _ in range(batch):
            x = _region(photos[int(torch.randint(0, len(photos), (), generator=gen))], region, gen)
            d = deg.sample(gen, p_clean=0.15, p_mix=0.45)
            c, w = views(deg.apply(x, d, gen), cfg, gen)
            y, s = targets(d)
            crops.append(c), wholes.append(w), ys.append(y), ss.append(s)
        y, s = torch.stack(ys), torch.stack(ss)
        logits, sev = model(torch.stack(crops), torch.stack(wholes))
        loss = F.binary_cross_entropy_with_logits(logits, y) + (F.l1_loss(sev, s, reduction="none") * y).sum() / y.sum().clamp(min=1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 100 == 0:
            log(json.dumps({"step": step, "loss": round(float(np.mean(losses)), 4),
                            "sec_per_step": round((time.time() - t0) / len(losses), 3)}))
            t0, losses = time.time(), []
    path = outdir / "classifier.safetensors"
    save_classifier(model, path, {"steps": steps, "data": data})
    return path


def evaluate_classifier(model: DegradationClassifier, data: str | None = None, per_photo: int = 6,
                        region: int = 256, seed: int = 0) -> dict:
    """Held-out metrics: F1 per label (singles, mixtures), severity within one level, clean pass rate."""
    from .evaluate import heldout_photos
    photos = [torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1) for a in heldout_photos(data).values()]
    gen = torch.Generator().manual_seed(seed)
    clf = Classifier(model)
    counts = {kind: {k: [0, 0, 0] for k in LABELS} for kind in ("single", "mixture")}  # tp, fp, fn
    sev_ok = sev_n = clean_ok = clean_n = 0
    for photo in photos:
        for j in range(per_photo * 3):
            x = _region(photo, region, gen)
            mode = ("clean", "single", "mixture")[j % 3]
            if mode == "clean":
                d = []
            elif mode == "single":
                d = [deg.make(k, float(torch.rand((), generator=gen)), gen)
                     for k in [list(deg.TRAIN_WEIGHTS)[int(torch.randint(0, len(deg.TRAIN_WEIGHTS), (), generator=gen))]]]
            else:
                while True:
                    d = deg.sample(gen, p_clean=0.0, p_mix=1.0)
                    if len(d) >= 2:
                        break
            y = deg.apply(x, d, gen)
            f = clf(y.permute(1, 2, 0)[None])[0]
            truth, tsev = targets(d)
            found = set(f.labels)
            if mode == "clean":
                clean_n += 1
                clean_ok += not found
                continue
            for i, k in enumerate(LABELS):
                t = bool(truth[i])
                c = counts[mode][k]
                c[0] += t and k in found
                c[1] += (not t) and k in found
                c[2] += t and k not in found
                if t:
                    sev_n += 1
                    sev_ok += abs(deg.LEVELS.index(level(f.severity[k])) - deg.LEVELS.index(level(float(tsev[i])))) <= 1
    f1 = {kind: {k: round(2 * tp / max(1, 2 * tp + fp + fn), 3) for k, (tp, fp, fn) in c.items()}
          for kind, c in counts.items()}
    return {"f1": f1, "severity_within_one_level": round(sev_ok / max(1, sev_n), 3),
            "clean_no_label": round(clean_ok / max(1, clean_n), 3), "photos": len(photos)}
