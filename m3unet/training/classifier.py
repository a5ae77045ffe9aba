"""Training and evaluating the DegradationClassifier on synthetic degradations of clean photos.

:func:`train_classifier` trains it (binary cross-entropy on the labels, L1 on the severities of
the labels present) on random regions of the training photos, degraded on the fly and quantised
to 8 bits like any saved image; :func:`evaluate_classifier` measures, on the held-out photos,
per-label F1 on single degradations and on mixtures of two or three, the share of severities
within one level, and the share of clean photos with no label.

Regions start at a random (not 8-aligned) offset in the photo, so that the JPEG blocks of the
source photo (many are JPEG originals) fall off the crops' 8x8 grid, while a synthetic JPEG
degradation always sits on it, as in a real JPEG file.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import synthesis as deg
from ..auto.classifier import LABELS, ClassifierConfig, Classifier, DegradationClassifier, save_classifier, targets, views
from .data import dark_region, load_split
from ..core.degradations import level

# Kind weights for classifier training: every label about equally often (lowres, the hardest, more).
CLASSIFIER_WEIGHTS = {"noise": 1.2, "poisson": 0.6, "blur": 1.6, "motion": 1.6, "lowres": 1.8,
                      "haze": 1.0, "lowlight": 1.0, "jpeg": 1.6}


# Share of low-light samples without the noise that low light otherwise always brings: the
# automatic restore often denoises first, and a dark, denoised photo is still low light (with only
# noisy examples the classifier learned "no noise, so no low light").
LOWLIGHT_CLEAN = 0.3


def depth_of_field(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A photo property, not a degradation: part of ``x`` [3, H, W] defocused, part kept sharp.

    Macro shots and portraits keep a sharp subject in front of an out-of-focus background (bokeh);
    such a photo is not blurred, and the automatic restore must not "sharpen" its background (a
    classifier fitted without this reads the validation macro shot mate-LadyBird as blurred). The
    in-focus part is a smooth random blob, 15-60 % of the area (a low-resolution random field,
    up-sampled and thresholded with a soft edge); the rest is a Gaussian defocus of 1.5-6 px. A global blur, which the synthesis always makes, leaves
    no crop sharp; this leaves the subject's crops sharp, which the image-level head can see.
    """
    _, h, w = x.shape
    cells = int(torch.randint(2, 6, (), generator=gen))
    field = F.interpolate(torch.rand(1, 1, cells, cells, generator=gen), size=(h, w), mode="bicubic",
                          align_corners=False)[0, 0]
    sharp_share = 0.15 + 0.45 * float(torch.rand((), generator=gen))
    cut = torch.quantile(field.flatten()[::max(1, h * w // 4096)], 1 - sharp_share)
    edge = 0.02 + 0.06 * float(torch.rand((), generator=gen))
    mask = torch.sigmoid((field - cut) / edge)[None]  # 1: in focus
    sigma = 1.5 + 4.5 * float(torch.rand((), generator=gen))
    return mask * x + (1 - mask) * deg.convolve(x, deg.gaussian_kernel(sigma))


def quantise(x: torch.Tensor) -> torch.Tensor:
    """Round to 8 bits, as an image file would store it."""
    return (x.clamp(0, 1) * 255).round() / 255


def _region(photo: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    _, h, w = photo.shape
    s = min(size, h, w)
    y = int(torch.randint(0, h - s + 1, (), generator=gen))
    x = int(torch.randint(0, w - s + 1, (), generator=gen))
    return photo[:, y:y + s, x:x + s].float() / 255


def _photos(data: Path, split: str) -> list[torch.Tensor]:
    return [torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1) for a in load_split(data, split).values()]


def sample_degradations(gen: torch.Generator, p_clean: float = 0.2, p_mix: float = 0.45) -> list[deg.Degradation]:
    """Clean, one kind, or a mixture of two or three kinds (weights :data:`CLASSIFIER_WEIGHTS`)."""
    r = float(torch.rand((), generator=gen))
    if r < p_clean:
        return []
    n = 1 if r < 1 - p_mix else int(torch.randint(2, 4, (), generator=gen))
    kinds = list(CLASSIFIER_WEIGHTS)
    weights = torch.tensor([CLASSIFIER_WEIGHTS[k] for k in kinds])
    chosen: list[str] = []
    while len(chosen) < n:
        k = kinds[int(torch.multinomial(weights, 1, generator=gen))]
        if k in chosen or any(k in ex and c in ex for ex in deg.EXCLUSIVE for c in chosen):
            continue
        chosen.append(k)
    out = [deg.make(k, float(torch.rand((), generator=gen)), gen) for k in chosen]
    for d in out:  # low light without its sensor noise (low ISO, or already denoised) in 30 %
        if d.kind == "lowlight" and float(torch.rand((), generator=gen)) < LOWLIGHT_CLEAN:
            d.params["sigma"] = 0.0
    return out


def _severity(v: float) -> float:
    return float(min(1.0, max(0.0, v)))


def wide_degradations(gen: torch.Generator, p_clean: float = 1 / 3, p_mix: float = 1 / 3) -> list[deg.Degradation]:
    """Clean, one kind, or two or three kinds in **random order**, over ranges wider than
    :func:`m3unet.training.synthesis.params_for`: Gaussian noise 3-55 /255 or Poisson-Gaussian noise
    (10-500 photons at white plus 0-10 /255), defocus 0.5-4 px, straight or curved motion 4-30 px,
    JPEG q5-90, down-sampling x1.5-4.5 by bicubic, bilinear or area, low light (gain 0.1-0.6, gamma
    1-2.4, noise 0-12 /255, none in 30 %), haze (density 0.2-0.8). Severities follow the training
    scale of each kind, clipped to [0, 1]. Apply with :func:`apply_in_order` (the list's order)."""
    u = lambda lo, hi: lo + (hi - lo) * float(torch.rand((), generator=gen))  # noqa: E731
    r = float(torch.rand((), generator=gen))
    if r < p_clean:
        return []
    n = 1 if r < 1 - p_mix else int(torch.randint(2, 4, (), generator=gen))
    families = ["noise", "blur", "motion", "jpeg", "lowres", "lowlight", "haze"]
    weights = torch.tensor([1.4, 1.2, 1.4, 1.2, 1.4, 1.0, 0.8])
    chosen: list[str] = []
    while len(chosen) < n:
        k = families[int(torch.multinomial(weights, 1, generator=gen))]
        if k in chosen or {k, *chosen} >= {"blur", "motion"}:
            continue
        chosen.append(k)
    out: list[deg.Degradation] = []
    for k in chosen:
        if k == "noise" and float(torch.rand((), generator=gen)) < 0.5:
            peak = 10 ** u(1.0, 2.7)
            sigma = u(0.0, 10.0)
            out.append(deg.Degradation("poisson", _severity((2.6 - math.log10(peak)) / 1.6),
                                       {"peak": peak, "sigma": sigma / 255}))
        elif k == "noise":
            sigma = u(3.0, 55.0)
            out.append(deg.Degradation("noise", _severity((sigma - 3) / 47), {"sigma": sigma / 255}))
        elif k == "blur":
            sigma = u(0.5, 4.0)
            out.append(deg.Degradation("blur", _severity((sigma - 0.6) / 3.0), {"sigma": sigma}))
        elif k == "motion":
            length = u(4.0, 30.0)
            curve = 0.0 if float(torch.rand((), generator=gen)) < 0.5 else u(-1.0, 1.0)
            out.append(deg.Degradation("motion", _severity((length - 5) / 20),
                                       {"length": length, "angle": u(0.0, 180.0), "curve": curve,
                                        "seed": int(torch.randint(0, 2 ** 31 - 1, (), generator=gen))}))
        elif k == "jpeg":
            q = int(round(u(5.0, 90.0)))
            out.append(deg.Degradation("jpeg", _severity((70 - q) / 62), {"quality": q}))
        elif k == "lowres":
            scale = u(1.5, 4.5)
            mode = ("bicubic", "bilinear", "area")[int(torch.randint(0, 3, (), generator=gen))]
            out.append(deg.Degradation("lowres", _severity((scale - 1.5) / 2.5), {"scale": scale, "mode": mode}))
        elif k == "lowlight":
            gain = u(0.1, 0.6)
            sigma = 0.0 if float(torch.rand((), generator=gen)) < LOWLIGHT_CLEAN else u(0.0, 12.0)
            out.append(deg.Degradation("lowlight", _severity((0.55 - gain) / 0.4),
                                       {"gain": gain, "gamma": u(1.0, 2.4), "sigma": sigma / 255}))
        else:
            density = u(0.2, 0.8)
            out.append(deg.Degradation("haze", _severity((density - 0.25) / 0.5),
                                       {"density": density, "airlight": u(0.7, 0.97), "tilt": u(-1.0, 1.0)}))
    return out


def apply_in_order(x: torch.Tensor, degs: list[deg.Degradation], gen: torch.Generator) -> torch.Tensor:
    """Apply ``degs`` in the order given (not the camera order of :func:`m3unet.training.synthesis.apply`)."""
    for d in degs:
        x = deg.apply_one(x, d, gen).clamp(0, 1)
    return x


RANGES = ("train", "wide", "both")


def check_sampling(ranges: str, dark: float, dof: float) -> None:
    """Refuse sampling settings :func:`degraded_region` cannot use, naming the argument and the fix."""
    if ranges not in RANGES:
        raise ValueError(f"ranges is {ranges!r}; give train, wide or both")
    if not 0 <= dof <= 1:
        raise ValueError(f"dof (the share of regions with a depth of field) is {dof}; give 0..1")
    if not 0 <= dark <= 1:
        raise ValueError(f"dark (the share of regions from the photos' dark parts) is {dark}; give 0..1")


def degraded_region(photo: torch.Tensor, region: int, gen: torch.Generator, ranges: str = "train",
                    dark: float = 0.0, dof: float = 0.0, p_clean: float | None = None,
                    p_mix: float | None = None) -> tuple[torch.Tensor, list[deg.Degradation]]:
    """One labelled sample: a ``region`` px square of ``photo`` (uint8 ``[3, H, W]``) degraded and
    quantised to 8 bits, with its degradations.

    ``ranges``: ``train`` (:func:`sample_degradations`, camera order), ``wide``
    (:func:`wide_degradations`, random order) or ``both`` (half each). A share ``dark`` of the regions
    is drawn among the photo's darkest tenth of squares (:func:`m3unet.training.data.dark_region`;
    labels unchanged: a scene that is dark by nature is not low light), a share ``dof`` is given a
    shallow depth of field (:func:`depth_of_field`; labels unchanged: bokeh is not blur).
    ``p_clean``/``p_mix`` (default: each sampler's own) set the shares of clean and mixed samples.
    """
    check_sampling(ranges, dark, dof)
    wide = ranges == "wide" or (ranges == "both" and float(torch.rand((), generator=gen)) < 0.5)
    shares = {k: v for k, v in (("p_clean", p_clean), ("p_mix", p_mix)) if v is not None}
    d = wide_degradations(gen, **shares) if wide else sample_degradations(gen, **shares)
    if dark > 0 and float(torch.rand((), generator=gen)) < dark:
        x = dark_region(photo.float() / 255, region, gen, among=0.1)
    else:
        x = _region(photo, region, gen)
    if dof > 0 and float(torch.rand((), generator=gen)) < dof:
        x = depth_of_field(x, gen)
    return quantise(apply_in_order(x, d, gen) if wide else deg.apply(x, d, gen)), d


def make_batch(photos: list[torch.Tensor], cfg: ClassifierConfig, batch: int, k: int, region: int,
               gen: torch.Generator, degs: list[list[deg.Degradation]] | None = None, ranges: str = "train",
               dark: float = 0.0, dof: float = 0.0):
    """One training batch: crops [B, K, 3, c, c], whole views [B, 3, g, g], labels and severities [B, L].

    With the defaults (training ranges, no dark regions, no depth of field) or given ``degs``, each
    sample is a random region degraded by :func:`sample_degradations`; otherwise by
    :func:`degraded_region` with ``ranges``, ``dark`` and ``dof``."""
    crops, wholes, ys, ss = [], [], [], []
    plain = degs is not None or (ranges == "train" and dark == 0 and dof == 0)
    for i in range(batch):
        photo = photos[int(torch.randint(0, len(photos), (), generator=gen))]
        if plain:
            x = _region(photo, region, gen)
            d = sample_degradations(gen) if degs is None else degs[i]
            img = quantise(deg.apply(x, d, gen))
        else:
            img, d = degraded_region(photo, region, gen, ranges, dark, dof)
        c, w = views(img, cfg, gen, k=k)
        y, s = targets(d)
        crops.append(c), wholes.append(w), ys.append(y), ss.append(s)
    return torch.stack(crops), torch.stack(wholes), torch.stack(ys), torch.stack(ss)


def classifier_loss(model: DegradationClassifier, crops, wholes, y, s) -> torch.Tensor:
    logits, sev = model(crops, wholes)
    return (F.binary_cross_entropy_with_logits(logits, y)
            + (F.l1_loss(sev, s, reduction="none") * y).sum() / y.sum().clamp(min=1))


def _blur_whole(w: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Training augmentation of the global view: a random slight blur, so that the global branch
    cannot learn fine blur cues that vanish when a large photo is down-scaled to the view."""
    sigma = 1.2 * float(torch.rand((), generator=gen))
    if sigma < 0.2:
        return w
    return deg.convolve(w, deg.gaussian_kernel(sigma))


def train_classifier(data: str = "data/photos", out: str = "runs/classifier", steps: int = 4000, batch: int = 24,
                     crops: int = 6, lr: float = 1e-3, warmup: int = 200, region: int = 192, seed: int = 0,
                     threads: int = 1, minutes: float | None = None, init: str | None = None,
                     ranges: str = "train", dark: float = 0.0, dof: float = 0.0, log=print) -> Path:
    """Train and save ``out/classifier.safetensors`` (and ``out/train-log.jsonl``); returns its path.

    AdamW with a linear warm-up and a cosine decay, gradient clipping at 1. ``minutes`` stops
    early (the cosine schedule is laid out over ``steps``). A checkpoint is written every 250 steps.
    ``init`` starts from a classifier file (see :func:`warm_start`). ``ranges``, ``dark`` and ``dof``
    choose the samples as in :func:`degraded_region` (wider ranges, dark scenes, bokeh).
    """
    check_sampling(ranges, dark, dof)
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    photos = _photos(Path(data), "train")
    model = warm_start(init) if init else DegradationClassifier()
    cfg = model.config
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / "classifier.safetensors"
    logf = open(outdir / "train-log.jsonl", "a")
    start, t0, losses, data_time = time.time(), time.time(), [], 0.0
    meta = {"data": data, "batch": batch, "crops": crops, "region": region, "lr": lr, "seed": seed,
            "init": init or "", "ranges": ranges, "dark": dark, "dof": dof}
    for step in range(1, steps + 1):
        model.train()
        td = time.time()
        c, w, y, s = make_batch(photos, cfg, batch, crops, region, gen, ranges=ranges, dark=dark, dof=dof)
        w = torch.stack([_blur_whole(wi, gen) for wi in w])
        data_time += time.time() - td
        loss = classifier_loss(model, c, w, y, s)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        done = minutes is not None and time.time() - start > 60 * minutes
        if step % 50 == 0 or done or step == steps:
            rec = {"step": step, "loss": round(float(np.mean(losses)), 4), "lr": round(sched.get_last_lr()[0], 6),
                   "sec_per_step": round((time.time() - t0) / len(losses), 3),
                   "data_sec_per_step": round(data_time / len(losses), 3),
                   "minutes": round((time.time() - start) / 60, 1)}
            log(json.dumps(rec))
            logf.write(json.dumps(rec) + "\n")
            logf.flush()
            t0, losses, data_time = time.time(), [], 0.0
        if step % 250 == 0 or done or step == steps:
            save_classifier(model, path, meta | {"steps": step})
        if done:
            break
    logf.close()
    return path


def warm_start(path: str) -> DegradationClassifier:
    """A classifier with the default head inputs, initialised from the file at ``path``.

    Tensors of the same shape are copied. If the file predates the per-crop statistics, the head's
    first layer gets their columns appended with zero weights, so the warm-started model computes
    exactly what the file's model did until training uses them.
    """
    from ..auto.classifier import load_classifier
    old = load_classifier(path)
    cfg = ClassifierConfig.from_dict(json.loads(old.config.to_json()) | {"crop_stats": True})
    model = DegradationClassifier(cfg)
    state, src = model.state_dict(), old.state_dict()
    for k, v in src.items():
        if k in state and state[k].shape == v.shape:
            state[k] = v.clone()
        elif k == "head.0.weight" and v.shape[1] < state[k].shape[1]:
            state[k] = torch.cat([v, torch.zeros(v.shape[0], state[k].shape[1] - v.shape[1])], 1)
    model.load_state_dict(state)
    return model


# The heads are fitted (calibrated) with a third clean, a third single and a third mixed regions:
# the held-out evaluation's mix, and closer to real use, where most photos are not degraded in
# every way. The first stage trains on more degraded regions (more signal per step).
HEAD_P_CLEAN = HEAD_P_MIX = 1 / 3


@torch.no_grad()
def _cache_features(model: DegradationClassifier, photos: list[torch.Tensor], per_photo: int, region: int,
                    gen: torch.Generator, dof: float = 0.0, ranges: str = "train",
                    dark: float = 0.0) -> list[torch.Tensor]:
    """Frozen CNN features of fresh degraded regions, read exactly as at inference (grid crops);
    a share ``dof`` of the regions get a shallow depth of field first (:func:`depth_of_field`), a
    share ``dark`` is drawn from the photo's dark part (:func:`m3unet.training.data.dark_region`,
    among its darkest tenth of squares), where a scene that is dark by nature is not low light.
    ``ranges``: ``train`` (:func:`sample_degradations`), ``wide`` (:func:`wide_degradations`) or
    ``both`` (half each)."""
    model.eval()
    locs, glbs, sts, specs, ys, ss = [], [], [], [], [], []
    for photo in photos:
        for _ in range(per_photo):
            img, d = degraded_region(photo, region, gen, ranges, dark, dof, HEAD_P_CLEAN, HEAD_P_MIX)
            c, w = views(img, model.config)
            loc, glb, st, spec = model.features(c[None], w[None])
            y, s = targets(d)
            locs.append(loc[0]), glbs.append(glb[0]), sts.append(st[0]), ys.append(y), ss.append(s)
            specs.append(spec[0] if spec is not None else torch.zeros(0))
    return [torch.stack(t) for t in (locs, glbs, sts, specs, ys, ss)]


def fit_heads(model: DegradationClassifier, data: str = "data/photos", per_photo: int = 120, region: int = 256,
              epochs: int = 60, lr: float = 1e-3, val_photos: int = 5, seed: int = 2, threads: int = 1,
              image_labels: list[str] | None = None, add: bool = False, spectrum: bool | None = None,
              image_hidden: int | None = None, photometric_labels: list[str] | None = None,
              crop_head: bool = False, dof: float = 0.0, ranges: str = "train", dark: float = 0.0,
              val_pick: str = "last", log=print) -> DegradationClassifier:
    """Second stage: fit the image-level head (pooled crop statistics -> blur, motion, low
    resolution) on cached features; everything else stays as trained.

    The CNN branches are the expensive part; frozen, each training photo's degraded regions are
    encoded once (``per_photo`` regions, read with the inference grid of crops) and the small
    head is trained for ``epochs`` passes. The last ``val_photos`` training photos (never the
    held-out split) pick the epoch with the lowest loss. ``image_labels`` (default: the model's)
    chooses the labels the image-level head decides; a different set starts a fresh head, or with
    ``add`` (the old labels first, then new ones) extends the head and trains only what is new, so
    the old labels' outputs stay exactly as they were (:func:`_extend_image_head`). ``spectrum``
    switches the head's power-spectrum input on or off (a change starts a fresh head); its
    standardisation is set from the cached training features. ``image_hidden`` sets the fresh
    head's hidden units; ``photometric_labels`` (e.g. lowlight) are decided by a fresh photometric
    head on the colour statistics instead of the image-level head. ``crop_head`` also refits the
    crop-level head (from its current weights) on the same cached regions, a third of them clean:
    a CNN trained on mostly degraded regions can over-call a label on clean ones. ``dof`` is the
    share of regions given a natural shallow depth of field (:func:`depth_of_field`), labels unchanged.
    ``ranges`` chooses the degradations: the training ranges, :func:`wide_degradations` or both.
    ``dark`` is the share of regions drawn from the photos' dark parts. ``val_pick`` chooses the
    photos that pick the epoch: the ``last`` ones in the split's order, or ``spread`` evenly over it
    (the photos added last to the training split then also train the heads).
    """
    import copy
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    labels = list(image_labels or model.config.image_labels)
    unknown = [k for k in labels if k not in LABELS]
    if unknown:
        raise ValueError(f"image labels {unknown} are not classifier labels ({', '.join(LABELS)})")
    frozen_masks = None
    if crop_head and add:
        raise ValueError("--crop-head refits the crop-level head; --add keeps everything but the new labels")
    spectrum = model.config.spectrum if spectrum is None else spectrum
    photometric = list(model.config.photometric_labels if photometric_labels is None else photometric_labels)
    if set(photometric) & set(labels) or set(photometric) - set(LABELS):
        raise ValueError(f"photometric labels {photometric} must be classifier labels and not also image labels {labels}")
    if spectrum != model.config.spectrum or image_hidden or photometric != list(model.config.photometric_labels):
        if add:
            raise ValueError("--add keeps the image-level head's inputs and size; a spectrum, size or "
                             "photometric change needs a fresh head")
        model = _new_image_head(model, {"image_head": True, "image_labels": labels, "spectrum": spectrum,
                                        "photometric_labels": photometric}
                                | ({"image_hidden": image_hidden} if image_hidden else {}))
    elif model.image_head is not None and labels != list(model.config.image_labels) and add:
        model, frozen_masks = _extend_image_head(model, labels)
    elif model.image_head is None or labels != list(model.config.image_labels):
        # An older file, or another label set: a fresh image-level head (zero output at first).
        model = _new_image_head(model, {"image_head": True, "image_labels": labels})
    check_sampling(ranges, dark, dof)
    if val_pick not in ("last", "spread"):
        raise ValueError(f"val_pick is {val_pick!r}; give last or spread")
    photos = _photos(Path(data), "train")
    t0 = time.time()
    if not 0 < val_photos < len(photos):
        raise ValueError(f"val_photos is {val_photos}; give 1..{len(photos) - 1} (the split has {len(photos)} photos)")
    val_index = (set(range(len(photos) - val_photos, len(photos))) if val_pick == "last" else
                 {int((i + 0.5) * len(photos) / val_photos) for i in range(val_photos)})
    fit_photos = [p for i, p in enumerate(photos) if i not in val_index]
    val_photos_ = [p for i, p in enumerate(photos) if i in val_index]
    train = _cache_features(model, fit_photos, per_photo, region, gen, dof, ranges, dark)
    val = _cache_features(model, val_photos_, per_photo // 2, region, gen, dof, ranges, dark)
    log(json.dumps({"cached": len(train[0]), "val": len(val[0]), "minutes": round((time.time() - t0) / 60, 1)}))
    if model.spec_norm is not None and frozen_masks is None:  # standardise the spectrum statistics
        model.spec_norm.running_mean.copy_(train[3].mean(0))
        model.spec_norm.running_var.copy_(train[3].var(0).clamp(min=1e-6))
    # No weight decay with frozen entries: decay would shrink them although their gradient is masked.
    params = list(model.image_head.parameters()) + (list(model.photo_head.parameters())
                                                    if model.photo_head is not None and frozen_masks is None else [])
    if crop_head:
        params += list(model.head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0 if frozen_masks else 1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)

    def loss_of(batch) -> torch.Tensor:
        loc, glb, st, spec, y, s = batch
        logits, sev = model.decide(loc, glb, st, spec)  # spec is read only by a spectrum head
        return (F.binary_cross_entropy_with_logits(logits, y)
                + (F.l1_loss(sev, s, reduction="none") * y).sum() / y.sum().clamp(min=1))

    best, best_state = float("inf"), None
    n = len(train[0])
    for epoch in range(epochs):
        perm = torch.randperm(n)
        for i in range(0, n, 64):
            idx = perm[i:i + 64]
            loss = loss_of([t[idx] for t in train])
            opt.zero_grad()
            loss.backward()
            if frozen_masks is not None:
                for param, mask in zip(model.image_head.parameters(), frozen_masks):
                    param.grad *= mask
            opt.step()
        sched.step()
        with torch.no_grad():
            v = float(loss_of(val))
        if v < best:
            best, best_state = v, copy.deepcopy(model.state_dict())
        if epoch % 5 == 4 or epoch == epochs - 1:
            log(json.dumps({"epoch": epoch + 1, "val_loss": round(v, 4), "best": round(best, 4)}))
    model.load_state_dict(best_state)
    return model.eval()


def _new_image_head(model: DegradationClassifier, changes: dict) -> DegradationClassifier:
    """A copy of ``model`` with its config changed by ``changes`` and a freshly initialised
    image-level head (zero output); every other weight is kept."""
    fresh = DegradationClassifier(ClassifierConfig.from_dict(json.loads(model.config.to_json()) | changes))
    fresh_parts = ("image_head.", "photo_head.") if "photometric_labels" in changes else ("image_head.",)
    fresh.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith(fresh_parts)},
                          strict=False)
    return fresh


def _extend_image_head(model: DegradationClassifier, labels: list[str]
                       ) -> tuple[DegradationClassifier, list[torch.Tensor]]:
    """A copy of ``model`` whose image-level head also decides the new ``labels``.

    The head gets as many new hidden units as it had; the old units and the old labels' output
    rows are copied, and the old rows do not see the new units (zero weights). Returned with a
    gradient mask per head parameter (0 = frozen) so that training changes only the new parts:
    the old labels' outputs stay the same (to float rounding).
    """
    old = list(model.config.image_labels)
    if labels[:len(old)] != old or len(labels) == len(old):
        raise ValueError(f"adding image labels: list the old ones first ({', '.join(old)}), then the new ones")
    h_old = model.image_head[0].out_features
    new = _new_image_head(model, {"image_labels": labels, "image_hidden": 2 * h_old})
    n_old, n = len(old), len(labels)
    rows = list(range(n_old)) + [n + i for i in range(n_old)]  # old logits, old severities
    src_rows = list(range(2 * n_old))
    first, last = new.image_head[0], new.image_head[2]
    masks = [torch.ones_like(p) for p in new.image_head.parameters()]  # weight0, bias0, weight2, bias2
    with torch.no_grad():
        first.weight[:h_old] = model.image_head[0].weight
        first.bias[:h_old] = model.image_head[0].bias
        last.weight.zero_()
        last.bias.zero_()
        last.weight[rows, :h_old] = model.image_head[2].weight[src_rows]
        last.bias[rows] = model.image_head[2].bias[src_rows]
    masks[0][:h_old] = 0
    masks[1][:h_old] = 0
    masks[2][rows] = 0
    masks[3][rows] = 0
    return new, masks


def _single(gen: torch.Generator) -> list[deg.Degradation]:
    kinds = list(deg.TRAIN_WEIGHTS)
    kind = kinds[int(torch.randint(0, len(kinds), (), generator=gen))]
    return [deg.make(kind, float(torch.rand((), generator=gen)), gen)]


def _mixture(gen: torch.Generator) -> list[deg.Degradation]:
    while True:
        d = deg.sample(gen, p_clean=0.0, p_mix=1.0)
        if len(d) >= 2:
            return d


def validation_samples(data: str | None = None, split: str = "validation", per_photo: int = 6, region: int = 256,
                       seed: int = 0):
    """The samples :func:`evaluate_classifier` reads, in its order: ``(mode, image, degradations)`` with
    ``mode`` one of clean, single, mixture (``per_photo`` of each per photo, interleaved, seed ``seed``)
    and then bokeh (``per_photo`` clean regions per photo given a shallow depth of field, seed ``seed + 1``);
    ``image`` is ``[3, S, S]`` quantised to 8 bits."""
    from .data import evaluation_photos
    photos = [torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1) for a in evaluation_photos(data, split).values()]
    gen = torch.Generator().manual_seed(seed)
    size = region if region > 0 else 1 << 30  # 0: the largest square
    for photo in photos:
        for j in range(per_photo * 3):
            x = _region(photo, size, gen)
            mode = ("clean", "single", "mixture")[j % 3]
            d = [] if mode == "clean" else _single(gen) if mode == "single" else _mixture(gen)
            yield mode, quantise(deg.apply(x, d, gen)), d
    # A separate stream, so that the samples above do not move.
    bokeh_gen = torch.Generator().manual_seed(seed + 1)
    for photo in photos:
        for _ in range(per_photo):
            yield "bokeh", quantise(depth_of_field(_region(photo, size, bokeh_gen), bokeh_gen)), []


def evaluate_classifier(model: DegradationClassifier, data: str | None = None, split: str = "validation", per_photo: int = 6,
                        region: int = 256, seed: int = 0, threshold: float = 0.5, confusion: bool = False) -> dict:
    """Held-out metrics: F1 per label (singles, mixtures), severity within one level, clean pass rate.

    For every held-out photo, ``per_photo`` clean regions, ``per_photo`` single degradations
    (kind uniform over :data:`m3unet.training.synthesis.KINDS`, severity uniform in [0, 1]) and
    ``per_photo`` mixtures of two or three (:func:`m3unet.training.synthesis.sample`), all seeded by
    ``seed``; images are quantised to 8 bits. ``region`` px square regions (0: the largest square).
    Also ``per_photo`` clean regions with a shallow depth of field (:func:`depth_of_field`): the
    share read with no label (``bokeh_no_label``), since bokeh is not a blur to remove.
    """
    clf = Classifier(model, threshold)
    counts = {kind: {k: [0, 0, 0] for k in LABELS} for kind in ("single", "mixture")}  # tp, fp, fn
    conf = {k: {j: 0 for j in LABELS + ("none",)} for k in LABELS}  # singles: true label -> detected
    clean_fp = {k: 0 for k in LABELS}
    bokeh_fp = {k: 0 for k in LABELS}
    sev_ok = sev_n = clean_ok = clean_n = bokeh_ok = bokeh_n = 0
    for mode, y, d in validation_samples(data, split, per_photo, region, seed):
        f = clf(y.permute(1, 2, 0)[None])[0]
        found = set(f.labels)
        if mode in ("clean", "bokeh"):
            n_ok = not found
            if mode == "clean":
                clean_n, clean_ok = clean_n + 1, clean_ok + n_ok
            else:
                bokeh_n, bokeh_ok = bokeh_n + 1, bokeh_ok + n_ok
            for k in found:
                (clean_fp if mode == "clean" else bokeh_fp)[k] += 1
            continue
        truth, tsev = targets(d)
        if mode == "single":
            t = LABELS[int(truth.argmax())]
            for k in found or {"none"}:
                conf[t][k] += 1
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
    out = {"f1": f1, "severity_within_one_level": round(sev_ok / max(1, sev_n), 3),
           "clean_no_label": round(clean_ok / max(1, clean_n), 3), "clean_false_labels": clean_fp,
           "bokeh_no_label": round(bokeh_ok / max(1, bokeh_n), 3), "bokeh_false_labels": bokeh_fp,
           "photos": clean_n // max(1, per_photo), "per_photo": per_photo, "region": region, "seed": seed,
           "threshold": threshold, "counts": counts}
    if confusion:
        out["single_confusion"] = conf
    return out


def main_args(args) -> int:
    """``python -m m3unet train-classifier``."""
    path = train_classifier(data=args.data, out=args.out, steps=args.steps, batch=args.batch, crops=args.crops,
                            lr=args.lr, warmup=args.warmup, region=args.region, seed=args.seed, threads=args.threads,
                            minutes=args.minutes, init=args.init, ranges=args.ranges, dark=args.dark, dof=args.dof,
                            log=lambda s: print(s, flush=True))
    print(f"wrote {path}")
    return 0


def bench_classifier(model: DegradationClassifier, side: int = 1000, threads: int = 2, repeats: int = 10) -> dict:
    """Seconds to classify one ``side`` x ``side`` uint8 RGB image (median and best of ``repeats``)."""
    torch.set_num_threads(threads)
    clf = Classifier(model)
    x = (torch.rand(1, side, side, 3, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    clf(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        clf(x)
        times.append(time.perf_counter() - t0)
    return {"megapixels": round(side * side / 1e6, 2), "threads": threads,
            "median_s": round(float(np.median(times)), 4), "best_s": round(min(times), 4)}


def fit_main_args(args) -> int:
    """``python -m m3unet fit-classifier-heads``."""
    from ..auto.classifier import load_classifier
    labels = [k.strip() for k in args.image_labels.split(",") if k.strip()] if args.image_labels else None
    model = fit_heads(load_classifier(args.init), data=args.data, per_photo=args.per_photo, epochs=args.epochs,
                      seed=args.seed, threads=args.threads, image_labels=labels, add=args.add,
                      spectrum={"on": True, "off": False}.get(args.spectrum), image_hidden=args.image_hidden,
                      photometric_labels=None if args.photometric_labels is None else
                      [k.strip() for k in args.photometric_labels.split(",") if k.strip()],
                      crop_head=args.crop_head, dof=args.dof, ranges=args.ranges, dark=args.dark,
                      val_pick=args.val_pick, log=lambda s: print(s, flush=True))
    meta = dict(getattr(load_classifier(args.init), "metadata", {}))
    # fresh heads give fresh logits: the init file's decision offsets do not carry over
    meta = {k: v for k, v in meta.items() if k not in ("m3unet_classifier_config", "labels", "format", "calibration")}
    meta.update({"heads_fitted_from": args.init, "heads_per_photo": args.per_photo, "heads_epochs": args.epochs,
                 "image_labels": ",".join(model.config.image_labels), "spectrum": model.config.spectrum,
                 "photometric_labels": ",".join(model.config.photometric_labels), "crop_head_refit": args.crop_head,
                 "heads_dof": args.dof, "heads_ranges": args.ranges, "heads_dark": args.dark,
                 "heads_val_pick": args.val_pick})
    if args.min_side is not None:
        meta["min_side"] = int(args.min_side)
    save_classifier(model, args.out, meta)
    print(f"wrote {args.out}")
    return 0


def eval_main_args(args) -> int:
    """``python -m m3unet eval-classifier``: prints (and optionally writes) the held-out metrics as JSON."""
    from ..auto.classifier import load_classifier
    model = load_classifier(args.classifier)
    t0 = time.time()
    res = evaluate_classifier(model, args.data, args.split, per_photo=args.per_photo, region=args.region, seed=args.seed,
                              threshold=args.threshold, confusion=True)
    res["classifier"] = str(args.classifier or "weights/classifier-default.safetensors")
    res["seconds"] = round(time.time() - t0, 1)
    res["speed"] = bench_classifier(model)
    text = json.dumps(res, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0
