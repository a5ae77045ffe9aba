"""The stress set: photos degraded over wider ranges than training uses. ``python -m m3unet eval --stress``.

Each case is one photo (256 px centre crop) with one degradation drawn from a range wider than the
training ranges of :mod:`m3unet.training.synthesis`, or a mix of two or three applied in random
order (not the camera order the training mixes use), or no degradation. Everything is seeded by
:data:`STRESS_SEED`, which nothing is trained on; the photos are the test split by default.

Kinds and ranges (each cut into three severity bands by its main parameter):

===================== ============================================================ ==============
kind                  parameters                                                   band by
===================== ============================================================ ==============
gaussian noise        sigma 5-50 /255                                              sigma
poisson-gaussian      peak 10-200 photons at white, plus Gaussian 2-10 /255         1 / peak
defocus               Gaussian blur sigma 0.8-3.5 px                               sigma
linear motion         5-25 px at any angle                                         length
camera shake          curved path 5-25 px at any angle                             length
jpeg                  quality 5-70                                                 quality (low: heavy)
downsampling          x2-x4 by bicubic, bilinear or area, brought back to size     factor
low light             gain 0.15-0.5, gamma 1.2-2.2, noise 2-10 /255                 gain (low: dark)
haze                  density 0.25-0.75, airlight 0.75-0.95                        density
===================== ============================================================ ==============

The report: the classifier's F1 per family (noise, JPEG, low light, haze, motion, and the *soft*
family: defocus blur and down-sampling, which overlap by construction,
``results/label-overlap.json``), the share of clean photos read with no label, and the automatic
restore's PSNR / SSIM gain over the input per kind and band.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..core.metrics import psnr, ssim
from ..training import synthesis as deg
from ..training.data import center_crop, dark_region, evaluation_photos

STRESS_SEED = 20_261_203
# label the classifier reports -> family scored
FAMILY_OF_LABEL = {"noise": "noise", "jpeg": "jpeg", "lowlight": "lowlight", "haze": "haze", "motion": "motion",
                   "blur": "soft", "lowres": "soft"}
FAMILIES = ("noise", "jpeg", "lowlight", "haze", "soft", "motion")
KINDS = ("gaussian noise", "poisson-gaussian", "defocus", "linear motion", "camera shake", "jpeg", "downsampling",
         "low light", "haze")
FAMILY_OF_KIND = {"gaussian noise": "noise", "poisson-gaussian": "noise", "defocus": "soft", "linear motion": "motion",
                  "camera shake": "motion", "jpeg": "jpeg", "downsampling": "soft", "low light": "lowlight",
                  "haze": "haze"}
BANDS = ("low", "mid", "high")


@dataclass
class Applied:
    """One degradation as applied: its kind, parameters and severity band."""
    kind: str
    params: dict
    band: str


@dataclass
class StressCase:
    photo: str
    name: str                       # a kind, "mix2", "mix3" or "clean"
    applied: list[Applied]
    degraded: torch.Tensor
    clean: torch.Tensor
    families: set[str] = field(default_factory=set)

    @property
    def band(self) -> str:
        return self.applied[0].band if len(self.applied) == 1 else "-"


def _u(gen: torch.Generator, lo: float, hi: float) -> tuple[float, float]:
    """A uniform draw in [lo, hi] and its position in the range (0-1)."""
    t = float(torch.rand((), generator=gen))
    return lo + (hi - lo) * t, t


def _band(t: float) -> str:
    return BANDS[min(2, int(t * 3))]


def draw(kind: str, gen: torch.Generator) -> Applied:
    """Parameters of one ``kind`` drawn over its stress range."""
    if kind == "gaussian noise":
        s, t = _u(gen, 5, 50)
        return Applied(kind, {"sigma": s / 255}, _band(t))
    if kind == "poisson-gaussian":
        inv, t = _u(gen, 1 / 200, 1 / 10)
        g, _ = _u(gen, 2, 10)
        return Applied(kind, {"peak": 1 / inv, "sigma": g / 255}, _band(t))
    if kind == "defocus":
        s, t = _u(gen, 0.8, 3.5)
        return Applied(kind, {"sigma": s}, _band(t))
    if kind in ("linear motion", "camera shake"):
        length, t = _u(gen, 5, 25)
        angle, _ = _u(gen, 0, 180)
        curve = 0.0 if kind == "linear motion" else _u(gen, -1, 1)[0]
        return Applied(kind, {"length": length, "angle": angle, "curve": curve,
                              "seed": int(torch.randint(0, 2 ** 31 - 1, (), generator=gen))}, _band(t))
    if kind == "jpeg":
        q, t = _u(gen, 5, 70)
        return Applied(kind, {"quality": int(round(q))}, _band(1 - t))
    if kind == "downsampling":
        f, t = _u(gen, 2, 4)
        mode = ("bicubic", "bilinear", "area")[int(torch.randint(0, 3, (), generator=gen))]
        return Applied(kind, {"factor": f, "mode": mode}, _band(t))
    if kind == "low light":
        g, t = _u(gen, 0.15, 0.5)
        gamma, _ = _u(gen, 1.2, 2.2)
        s, _ = _u(gen, 2, 10)
        return Applied(kind, {"gain": g, "gamma": gamma, "sigma": s / 255}, _band(1 - t))
    if kind == "haze":
        d, t = _u(gen, 0.25, 0.75)
        a, _ = _u(gen, 0.75, 0.95)
        return Applied(kind, {"density": d, "airlight": a, "tilt": _u(gen, -1, 1)[0]}, _band(t))
    raise ValueError(f"unknown stress kind {kind!r}; known: {', '.join(KINDS)}")


def apply(x: torch.Tensor, a: Applied, gen: torch.Generator) -> torch.Tensor:
    """Apply one drawn degradation to ``[3, H, W]`` (0-1); the size is kept."""
    p = a.params
    if a.kind == "gaussian noise":
        return (x + p["sigma"] * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    if a.kind == "poisson-gaussian":
        y = torch.poisson(x.clamp(0, 1) * p["peak"], generator=gen) / p["peak"]
        return (y + p["sigma"] * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    if a.kind == "defocus":
        return deg.convolve(x, deg.gaussian_kernel(p["sigma"])).clamp(0, 1)
    if a.kind in ("linear motion", "camera shake"):
        k = deg.motion_kernel(p["length"], p["angle"], p["curve"], p["seed"])
        return deg.convolve(x, k).clamp(0, 1)
    if a.kind == "jpeg":
        return deg.jpeg(x, p["quality"])
    if a.kind == "downsampling":
        h, w = x.shape[-2:]
        small = (max(1, round(h / p["factor"])), max(1, round(w / p["factor"])))
        if p["mode"] == "area":
            lo = F.interpolate(x[None], size=small, mode="area")
        else:
            lo = F.interpolate(x[None], size=small, mode=p["mode"], antialias=True, align_corners=False)
        return F.interpolate(lo, size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1)
    if a.kind == "low light":
        dark = (x.clamp(0, 1) * p["gain"]) ** p["gamma"]
        return (dark + p["sigma"] * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    if a.kind == "haze":
        return deg.apply_one(x, deg.Degradation("haze", 0.5, dict(p)), gen).clamp(0, 1)
    raise ValueError(f"unknown stress kind {a.kind!r}")


def _mix_kinds(n: int, gen: torch.Generator) -> list[str]:
    """``n`` kinds of different families, in random order."""
    out: list[str] = []
    while len(out) < n:
        k = KINDS[int(torch.randint(0, len(KINDS), (), generator=gen))]
        if FAMILY_OF_KIND[k] not in {FAMILY_OF_KIND[o] for o in out}:
            out.append(k)
    return out


def darkest_crop(a: np.ndarray, size: int) -> torch.Tensor:
    """The ``size`` px square of a photo (uint8 ``[H, W, 3]``) with the lowest mean luminance, on a
    16 px grid: the photo's own dark scene (shadows, night sky, a dark background)."""
    return dark_region(torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1).float() / 255, size)


REGIONS = ("centre", "dark")


def stress_set(photos: dict[str, np.ndarray], per_kind: int = 2, crop: int = 256,
               seed: int = STRESS_SEED, region: str = "centre") -> list[StressCase]:
    """``per_kind`` cases per kind and per photo, the same for two- and three-way mixes, and each photo
    clean; ``region``: each photo's centre crop or its darkest crop (:func:`darkest_crop`)."""
    if region not in REGIONS:
        raise ValueError(f"region is {region!r}; give one of {', '.join(REGIONS)}")
    gen = torch.Generator().manual_seed(seed)
    cases: list[StressCase] = []
    for pid in sorted(photos):
        clean = center_crop(photos[pid], crop) if region == "centre" else darkest_crop(photos[pid], crop)
        cases.append(StressCase(pid, "clean", [], clean, clean))
        names = [k for k in KINDS for _ in range(per_kind)] + ["mix2"] * per_kind + ["mix3"] * per_kind
        for name in names:
            kinds = _mix_kinds(int(name[-1]), gen) if name.startswith("mix") else [name]
            applied = [draw(k, gen) for k in kinds]
            y = clean
            for a in applied:
                y = apply(y, a, gen)
            cases.append(StressCase(pid, name, applied, y, clean, {FAMILY_OF_KIND[a.kind] for a in applied}))
    return cases


def _f1(counts: tuple[int, int, int]) -> float:
    """F1 from (true positives, false positives, false negatives), 3 decimals; NaN when all are 0."""
    tp, fp, fn = counts
    return round(2 * tp / (2 * tp + fp + fn), 3) if tp + fp + fn else float("nan")


def f1_scores(cases: list[StressCase], readings: list[set[str]]) -> dict[str, float]:
    """F1 per family of the classifier's readings (label families) against the applied families."""
    out = {}
    for fam in FAMILIES:
        tp = sum(1 for c, r in zip(cases, readings) if fam in c.families and fam in r)
        fp = sum(1 for c, r in zip(cases, readings) if fam not in c.families and fam in r)
        fn = sum(1 for c, r in zip(cases, readings) if fam in c.families and fam not in r)
        out[fam] = _f1((tp, fp, fn))
    return out


# Kinds that smooth away fine texture applied before them, and the families made of such texture.
SMOOTHING_KINDS = ("defocus", "linear motion", "camera shake", "downsampling")
TEXTURE_FAMILIES = ("noise", "jpeg")


def _hidden(applied: list[dict], family: str) -> bool:
    """True when the last degradation of ``family`` in a case (rows' ``applied``, in the order
    applied) is followed by a defocus, a motion blur or a down-sampling: for noise and JPEG, what
    the case is scored on is then mostly gone from the pixels."""
    idx = [i for i, a in enumerate(applied) if FAMILY_OF_KIND[a["kind"]] == family]
    return bool(idx) and any(a["kind"] in SMOOTHING_KINDS for a in applied[idx[-1] + 1:])


def miss_causes(rows: list[dict]) -> dict[str, dict]:
    """Where the reading's misses on a stress run come from, per family (``rows`` of
    :func:`evaluate_stress`): ``f1`` as scored; ``fn_hidden``, noise or JPEG missed where a later
    defocus, motion blur or down-sampling smoothed it away; ``fp_lowlight_noise``, noise read on a low-light
    case (the stress set's low light carries its own sensor noise, 2-10/255) with no noise applied;
    ``fn_other`` and ``fp_other``, the rest; ``f1_visible``, F1 with those two kinds of case left out
    of the family's count; ``photo_out``, the photo whose leaving out raises F1 most and the F1 then."""
    out = {}
    for fam in FAMILIES:
        causes = {"fn_hidden": 0, "fp_lowlight_noise": 0, "fn_other": 0, "fp_other": 0}
        counts, visible, per_photo = [0, 0, 0], [0, 0, 0], {}
        for r in rows:
            truth = fam in r["families"]
            read = fam in r["read"]  # rows hold the families read
            kind = 0 if truth and read else 1 if read else 2 if truth else None
            if kind is None:
                continue
            counts[kind] += 1
            per_photo.setdefault(r["photo"], [0, 0, 0])[kind] += 1
            hidden = truth and fam in TEXTURE_FAMILIES and _hidden(r["applied"], fam)
            sensor = (fam == "noise" and not truth and read and
                      any(a["kind"] == "low light" for a in r["applied"]))
            if kind == 2:
                causes["fn_hidden" if hidden else "fn_other"] += 1
            elif kind == 1:
                causes["fp_lowlight_noise" if sensor else "fp_other"] += 1
            if not (hidden or sensor):
                visible[kind] += 1
        best = None
        for photo, c in per_photo.items():
            f = _f1(tuple(a - b for a, b in zip(counts, c)))
            if best is None or f > best[1]:
                best = (photo, f)
        out[fam] = {"f1": _f1(tuple(counts)), **causes, "f1_visible": _f1(tuple(visible)),
                    "photo_out": list(best) if best else None}
    return out


def evaluate_stress(model_path: str | None = None, data: str | None = None, split: str = "test", per_kind: int = 2,
                    crop: int = 256, seed: int = STRESS_SEED, policy=None, classifier_path: str | None = None,
                    region: str = "centre", restore: bool = True, log: Callable[[str], None] = print) -> dict:
    """Classifier F1 per family and the automatic restore's gains per kind and band on the stress set
    (``restore=False``: the classifier alone, seconds instead of minutes)."""
    from ..auto.factory import build_auto_restorer
    from ..core.weights import load_model
    from ..restore.pipeline import Restorer
    auto = build_auto_restorer(Restorer(load_model(model_path)), model_path=model_path,
                               classifier=classifier_path or "shipped", policy=policy)
    if auto.classifier is None:
        raise ValueError("eval --stress needs the classifier weights (weights/classifier-default.safetensors)")
    from ..auto.reading import Reader
    reader = Reader(auto.classifier, auto.policy)
    photos = evaluation_photos(data, split)
    cases = stress_set(photos, per_kind, crop, seed, region)
    rows, readings, by_classifier, t0 = [], [], [], time.time()
    for k, c in enumerate(cases):
        # the reading as the pack reports it (the restore acts at its policy's decision points)
        f = reader(c.degraded.permute(1, 2, 0)[None])[0]
        read = {FAMILY_OF_LABEL[lbl] for lbl in f.labels}
        alone = {FAMILY_OF_LABEL[lbl] for lbl in list(f.labels) + list(f.scene)
                 if lbl not in f.spectral}  # the classifier alone: no spectrum, no scene limits
        readings.append(read)
        by_classifier.append(alone)
        row = {"photo": c.photo, "name": c.name, "band": c.band, "families": sorted(c.families),
               "read": sorted(read), **({"read_by_classifier": sorted(alone)} if alone != read else {}),
               "lowlight": [round(f.probabilities["lowlight"], 4), round(f.severity["lowlight"], 4)],
               "probabilities": {lbl: round(v, 4) for lbl, v in f.probabilities.items()}}
        rows.append(row)
        if not restore:
            continue
        res = auto.run(c.degraded.permute(1, 2, 0)[None], seed=k)
        out = res.image[0].permute(2, 0, 1)
        p_in, p_out = min(psnr(c.degraded, c.clean), 60.0), min(psnr(out, c.clean), 60.0)
        row.update({"applied": [{"kind": a.kind, "band": a.band, **{k2: (round(v, 4) if isinstance(v, float) else v)
                                                                     for k2, v in a.params.items()}} for a in c.applied],
                    "input_psnr": round(p_in, 3), "auto_psnr": round(p_out, 3),
                    "input_ssim": round(ssim(c.degraded, c.clean), 4), "auto_ssim": round(ssim(out, c.clean), 4),
                    "steps": [(s.task, s.outcome) for s in res.reports[0].steps]})
        if (k + 1) % 20 == 0:
            log(f"{k + 1}/{len(cases)} ({time.time() - t0:.0f}s)")
    clean = [r for r in rows if r["name"] == "clean"]
    table: dict[str, dict] = {}
    for name in list(KINDS) + ["mix2", "mix3", "clean"]:
        for band in (BANDS if name in KINDS else ("-",)):
            rs = [r for r in rows if r["name"] == name and r["band"] == band and "auto_psnr" in r]
            if rs:
                table[f"{name} / {band}"] = {
                    "n": len(rs), "input_psnr": round(float(np.mean([r["input_psnr"] for r in rs])), 2),
                    "gain_db": round(float(np.mean([r["auto_psnr"] - r["input_psnr"] for r in rs])), 2),
                    "gain_ssim": round(float(np.mean([r["auto_ssim"] - r["input_ssim"] for r in rs])), 4)}
    return {"split": split, "photos": sorted(photos), "seed": seed, "per_kind": per_kind, "crop": crop, "region": region,
            "policy": auto.policy.to_dict(),
            "cases": len(cases), "seconds": round(time.time() - t0),
            "f1": f1_scores(cases, readings), "f1_classifier_alone": f1_scores(cases, by_classifier),
            "clean_no_label": round(sum(1 for r in clean if not r["read"]) / max(1, len(clean)), 3),
            "gains": table, "rows": rows}


def stress_markdown(result: dict) -> str:
    f1 = " | ".join(f"{result['f1'][f]:.2f}" for f in FAMILIES)
    out = [f"{result['split']} photos ({', '.join(result['photos'])}), {result.get('region', 'centre')} crops, "
           f"{result['cases']} cases, seed {result['seed']}.",
           "", "| classifier F1: " + " | ".join(FAMILIES) + " | clean read with no label |",
           "|" + "---|" * (len(FAMILIES) + 1), f"| {f1} | {result['clean_no_label']:.2f} |", "",
           "| kind / band | n | input PSNR | auto gain (dB) | auto gain (SSIM) |", "|---|---|---|---|---|"]
    for key, v in result["gains"].items():
        out.append(f"| {key} | {v['n']} | {v['input_psnr']:.2f} | {v['gain_db']:+.2f} | {v['gain_ssim']:+.4f} |")
    return "\n".join(out) + "\n"


def plot(result: dict, path: str) -> None:
    """Bar chart of the automatic restore's PSNR gain per kind and band."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = list(result["gains"])
    vals = [result["gains"][k]["gain_db"] for k in keys]
    fig, ax = plt.subplots(figsize=(10, 0.28 * len(keys) + 1.2))
    ax.barh(range(len(keys)), vals, color=["#3a7" if v >= 0 else "#c44" for v in vals])
    ax.set_yticks(range(len(keys)), keys, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("automatic restore: PSNR gain over the input (dB)")
    ax.set_title(f"stress set ({result['split']} photos, {result['cases']} cases)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main_args(args) -> int:
    from ..auto.policy import policy_from
    torch.set_num_threads(2)
    result = evaluate_stress(args.model, args.data, args.split or "test", args.per_kind, args.crop or 256,
                             STRESS_SEED, policy_from(getattr(args, "policy", None)), args.classifier,
                             getattr(args, "region", "centre"), not getattr(args, "no_restore", False))
    print("\n" + stress_markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.plot and result["gains"]:
        plot(result, args.plot)
    return 0
