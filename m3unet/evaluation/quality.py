"""``python -m m3unet eval``: PSNR/SSIM per degradation on held-out photos, with baselines.

Rows are the fixed settings of :func:`m3unet.training.synthesis.eval_settings`; columns are the
degraded input, classical baselines where they apply (scikit-image non-local means and total
variation, and BM3D, given the true noise level: an advantage the blind M3UNet does not get),
and M3UNet at 1 step and at the default steps, blind (empty text) and with the canonical
restoration text. Photos are the held-out split of ``prepare-data`` (never used in training);
without it, the held-out photos bundled with scikit-image.

``--text-ablation`` measures the text prior instead (paper Sec. 3.3: restoration guided by the
text): on random held-out mixtures of two or three degradations, M3UNet with no text, with the
correct restoration text (:func:`m3unet.core.text.describe`) and with a wrong one; and its
controllability: on noise + blur, "remove the noise" and "remove the blur" should each land
closer to their own target (the photo with only that degradation removed).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..training import synthesis as deg
from ..training.data import center_crop, evaluation_photos
from ..core.metrics import psnr, ssim
from ..restore.pipeline import DEFAULT_STEPS, Restorer
from ..core.text import describe
from ..core.weights import load_model
from ..auto import guards
from ..auto.factory import build_auto_restorer
from ..auto.policy import DEFAULT_POLICY, RestorePolicy

NOISE_SETTINGS = {"noise25"}


def noise_sigma(degs: list[deg.Degradation]) -> float:
    return sum(d.params.get("sigma", 0.0) ** 2 for d in degs if d.kind == "noise") ** 0.5


def baseline(name: str, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """Classical denoisers with the true noise level (skimage NLM / TV, BM3D)."""
    img = y.permute(1, 2, 0).numpy().astype(np.float64)
    if name == "nlm":
        from skimage.restoration import denoise_nl_means
        out = denoise_nl_means(img, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6,
                               fast_mode=True, channel_axis=-1)
    elif name == "tv":
        from skimage.restoration import denoise_tv_chambolle
        out = denoise_tv_chambolle(img, weight=1.1 * sigma, channel_axis=-1)
    elif name == "bm3d":
        import bm3d
        out = bm3d.bm3d_rgb(img, sigma_psd=sigma)
    else:
        raise ValueError(f"unknown baseline {name!r}; choose from nlm, tv, bm3d")
    return torch.from_numpy(np.clip(out, 0, 1)).float().permute(2, 0, 1)


def colour_shift(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Global colour drift in 1/255 units: the largest per-channel difference of mean colour."""
    return float((x.mean((1, 2)) - ref.mean((1, 2))).abs().max() * 255)


def evaluate(model_path: str | None = None, data: str | None = None, split: str = "validation", crop: int = 256,
             steps: int = DEFAULT_STEPS, baselines: tuple[str, ...] = ("nlm", "tv", "bm3d"),
             settings: list[str] | None = None, classifier_path: str | None = None, kernel_deblur: bool = True,
             specialists: bool = True, policy: RestorePolicy = DEFAULT_POLICY,
             log=print) -> dict:
    """Run the evaluation; returns ``{setting: {method: {"psnr", "ssim"}}}`` plus metadata.

    Methods: the degraded input, the classical baselines (noise settings), M3UNet blind (empty
    text) at 1 and ``steps`` steps, M3UNet with the setting's restoration text, and ``auto``: what
    ``python -m m3unet restore`` does by default (the shipped classifier reads the image, the plan
    runs M3UNet passes steered by their texts, :class:`m3unet.auto.restorer.AutoRestorer`), with the
    classifier at ``classifier_path`` if given, and the kernel-aware deblur in the pool (unless
    ``kernel_deblur`` is False). Without classifier weights the auto column is left out.
    """
    restorer = Restorer(load_model(model_path))
    auto = build_auto_restorer(restorer, model_path=model_path, classifier=classifier_path or "shipped",
                               kernel_deblur=kernel_deblur, specialists=specialists, policy=policy)
    auto = auto if auto.classifier is not None else None
    photos = evaluation_photos(data, split)
    all_settings = deg.eval_settings()
    names = settings or list(all_settings)
    table: dict = {}
    for sname in names:
        degs = all_settings[sname]
        scores: dict[str, list[tuple[float, float]]] = {}
        t0 = time.time()
        for i, (pid, arr) in enumerate(sorted(photos.items())):
            x = center_crop(arr, crop)
            y = deg.apply(x, degs, torch.Generator().manual_seed(1000 + i))
            outs = {"input": y}
            if sname in NOISE_SETTINGS:
                for b in baselines:
                    outs[b] = baseline(b, y, noise_sigma(degs))
            img = y.permute(1, 2, 0)[None]
            for n in sorted({1, steps}):
                outs[f"m3unet_{n}step"] = restorer.restore(img, "", steps=n, seed=i)[0].permute(2, 0, 1)
            outs["m3unet_1step_text"] = restorer.restore(img, describe(degs), steps=1, seed=i)[0].permute(2, 0, 1)
            if auto is not None:
                outs["auto"] = auto.run(img, seed=i).image[0].permute(2, 0, 1)
            for k, v in outs.items():
                scores.setdefault(k, []).append((psnr(v, x), ssim(v, x), colour_shift(v, x)))
        table[sname] = {k: {"psnr": round(float(np.mean([s[0] for s in v])), 2),
                            "ssim": round(float(np.mean([s[1] for s in v])), 4),
                            "colour_shift": round(float(np.mean([s[2] for s in v])), 2)} for k, v in scores.items()}
        log(f"{sname}: " + ", ".join(f"{k} {v['psnr']:.2f}" for k, v in table[sname].items())
            + f" ({time.time() - t0:.0f}s)")
    return {"photos": sorted(photos), "crop": crop, "steps": steps, "table": table}


def to_markdown(result: dict) -> str:
    """The result as a Markdown table (PSNR dB / SSIM; gain over the input of the default steps, blind,
    and of the automatic restore when it was measured)."""
    cols: list[str] = []
    for row in result["table"].values():
        cols += [c for c in row if c not in cols]
    best = f"m3unet_{result['steps']}step"
    gains = [best] + (["auto"] if "auto" in cols else [])
    head = ("| setting | " + " | ".join(cols) + "".join(f" | gain of {g} (dB)" for g in gains)
            + " | colour shift in / out (1/255) |\n|---|" + "---|" * (len(cols) + len(gains) + 1) + "\n")
    lines = []
    for sname, row in result["table"].items():
        cells = [f"{row[c]['psnr']:.2f} / {row[c]['ssim']:.3f}" if c in row else "-" for c in cols]
        cells += [f"{row[g]['psnr'] - row['input']['psnr']:+.2f}" if g in row else "-" for g in gains]
        lines.append(f"| {sname} | " + " | ".join(cells) + " | "
                     f"{row['input']['colour_shift']:.1f} / {row[best]['colour_shift']:.1f} |")
    return head + "\n".join(lines) + "\n"


SMALL_SETTINGS = ("noise25", "blur2", "jpeg15", "mix", "lowres2x")


def small_image_evaluation(model_path: str | None = None, data: str | None = None, split: str = "validation", sides=(64, 96, 128),
                           classifier_path: str | None = None, settings=SMALL_SETTINGS, kernel_deblur: bool = True,
                           specialists: bool = True, policy: RestorePolicy = DEFAULT_POLICY,
                           log=print) -> dict:
    """Is the classifier's reading worth trusting on small images? For each side, the held-out
    photos' centre crops of that size under each setting, restored by the automatic restore with
    the classifier trusted at every size (``auto``, ``min_side`` 0), by the automatic restore as
    shipped (``shipped``: the file's own ``min_side``, under which the blur estimator alone decides
    whether to deconvolve, else one blind pass) and by one blind M3UNet pass; mean PSNR. The
    smallest side where ``auto`` is not worse than blind is what ``fit-classifier-heads --min-side``
    records in the classifier file (:attr:`m3unet.auto.classifier.Classifier.min_side`)."""
    from ..auto.classifier import DEFAULT_CLASSIFIER, Classifier, load_classifier
    restorer = Restorer(load_model(model_path))
    weights = load_classifier(classifier_path or DEFAULT_CLASSIFIER)
    build = lambda classifier: build_auto_restorer(  # noqa: E731
        restorer, model_path=model_path, classifier=classifier, kernel_deblur=kernel_deblur,
        specialists=specialists, policy=policy)
    auto = build(Classifier(weights, min_side=0))
    shipped = build(Classifier(weights))
    photos = sorted(evaluation_photos(data, split).items())
    rows = []
    kinds = ("input", "blind", "auto", "shipped")
    for side in sides:
        row: dict = {"side": side}
        for sname in settings:
            degs = deg.eval_settings()[sname]
            got: dict[str, list[float]] = {k: [] for k in kinds}
            for i, (_, arr) in enumerate(photos):
                x = center_crop(arr, side)
                y = deg.apply(x, degs, torch.Generator().manual_seed(1000 + i))
                img = y.permute(1, 2, 0)[None]
                got["input"].append(psnr(y, x))
                got["blind"].append(psnr(restorer.restore(img, "", steps=1, seed=i)[0].permute(2, 0, 1), x))
                got["auto"].append(psnr(auto.run(img, seed=i).image[0].permute(2, 0, 1), x))
                got["shipped"].append(psnr(shipped.run(img, seed=i).image[0].permute(2, 0, 1), x))
            row[sname] = {k: round(float(np.mean(v)), 2) for k, v in got.items()}
        row["mean"] = {k: round(float(np.mean([row[s][k] for s in settings])), 2) for k in kinds}
        rows.append(row)
        log(f"{side} px: " + ", ".join(f"{s} auto {row[s]['auto']:.2f} / blind {row[s]['blind']:.2f} / shipped "
                                      f"{row[s]['shipped']:.2f}" for s in settings)
            + f"; mean {row['mean']['auto']:.2f} / {row['mean']['blind']:.2f} / {row['mean']['shipped']:.2f}")
    return {"photos": [p for p, _ in photos], "settings": list(settings), "rows": rows,
            "min_side": Classifier(weights).min_side}


def small_markdown(result: dict) -> str:
    s = result["settings"]
    out = ["| side (px) | " + " | ".join(s) + " | mean |", "|---|" + "---|" * (len(s) + 1)]
    for r in result["rows"]:
        out.append(f"| {r['side']} | " + " | ".join(
            f"{r[k]['auto']:.2f} / {r[k]['blind']:.2f} / {r[k].get('shipped', float('nan')):.2f}" for k in s + ["mean"]) + " |")
    return (f"auto (classifier trusted at every size) / one blind pass / as shipped (the classifier's minimum side "
            f"{result.get('min_side', 0)} px) PSNR (dB)\n\n" + "\n".join(out) + "\n")


def _policy(args) -> RestorePolicy:
    from ..auto.policy import policy_from
    return policy_from(getattr(args, "policy", None))


def main_args(args) -> int:
    if args.crop is None:  # the CLI default (``eval --peers`` uses its own)
        args.crop = 256
    if getattr(args, "small_sides", None):
        torch.set_num_threads(2)
        sides = [int(v) for v in args.small_sides.split(",") if v.strip()]
        result = small_image_evaluation(args.model, args.data, args.split, sides, args.classifier,
                                        kernel_deblur=not args.no_kernel_deblur,
                                        specialists=not args.no_specialists, policy=_policy(args))
        print("\n" + small_markdown(result))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
        return 0
    if getattr(args, "auto", False) or getattr(args, "auto_rules", False):
        return auto_main(args)
    if getattr(args, "deblur", False):
        torch.set_num_threads(2)
        balances = tuple(float(b) for b in (args.balances or "").split(",") if b.strip())
        result = deblur_evaluation(args.model, args.data, args.split, args.crop, balances=balances,
                                   estimator_path=args.estimator)
        print(f"\nheld-out photos: {', '.join(result['photos'])}; centre crops {result['crop']} px; PSNR dB\n")
        print(deblur_markdown(result))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
        return 0
    torch.set_num_threads(2)
    if getattr(args, "text_ablation", False):
        result = text_ablation(args.model, args.data, args.split, args.crop, args.steps or DEFAULT_STEPS, args.per_photo)
        print(f"\nheld-out photos: {', '.join(result['photos'])}\n")
        print(ablation_markdown(result))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
        return 0
    baselines = tuple(b for b in args.baselines.split(",") if b and b != "none")
    settings = args.settings.split(",") if args.settings else None
    crop = 256 if args.crop is None else args.crop
    result = evaluate(args.model, args.data, args.split, crop, args.steps or DEFAULT_STEPS, baselines, settings,
                      args.classifier, kernel_deblur=not args.no_kernel_deblur,
                      specialists=not args.no_specialists, policy=_policy(args))
    print(f"\nheld-out photos: {', '.join(result['photos'])}; centre crops {result['crop']} px; PSNR dB / SSIM\n")
    print(to_markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


# ---------------------------------------------------------------------------- kernel-aware deblurring
DEBLUR_SIGMAS = (1.0, 2.0, 3.0)
DEBLUR_NOISES = (2.0, 5.0, 10.0)


def deblur_evaluation(model_path: str | None = None, data: str | None = None, split: str = "validation", crop: int = 256,
                      sigmas=DEBLUR_SIGMAS, noises=DEBLUR_NOISES, balances: tuple[float, ...] = (),
                      estimator_path: str | None = None, log=print) -> dict:
    """Gaussian blur (sigma px) plus Gaussian noise (1/255) on the held-out photos: the input, one
    blind M3UNet pass, one pass told "remove the ... blur", the kernel-aware deblur
    (:class:`m3unet.auto.deblur.KernelDeblur`, kernel and noise estimated) and the same with the TRUE
    kernel and noise level (an oracle); mean PSNR, and the estimator's mean absolute errors.
    ``balances``: also the oracle at each of these Wiener balances (how ``balance_for`` was chosen)."""
    from ..auto.deblur import MAX_NOISE, MIN_SIGMA, SHRINK, KernelDeblur, balance_for, estimate, load_estimator, load_shipped_estimator, wiener_deconvolve
    from ..core.text import describe
    restorer = Restorer(load_model(model_path))
    estimator = load_estimator(estimator_path) if estimator_path else load_shipped_estimator()
    if estimator is None:
        raise ValueError("no blur estimator weights (weights/blur-estimator.safetensors); train one with "
                         "`python -m m3unet train-blur-estimator` or pass --estimator FILE")
    tool = KernelDeblur(estimator, restorer)
    photos = sorted(evaluation_photos(data, split).items())
    one = lambda y, text: restorer.restore(y.permute(1, 2, 0)[None], text, steps=1, seed=0)[0].permute(2, 0, 1)  # noqa: E731
    rows = []
    for sigma in sigmas:
        for noise in noises:
            degs = [deg.make("blur", (sigma - 0.6) / 3.0, sigma=sigma), deg.make("noise", 0.0, sigma=noise / 255)]
            got: dict[str, list[float]] = {}
            err_s, err_n = [], []
            t0 = time.time()
            for i, (_pid, arr) in enumerate(photos):
                x = center_crop(arr, crop)
                y = deg.apply(x, degs, torch.Generator().manual_seed(1000 + i))
                est = estimate(estimator, y)
                err_s.append(abs(est.sigma - sigma))
                err_n.append(abs(est.noise - noise))
                outs = {"input": y, "m3unet_1step": one(y, ""), "m3unet_1step_text": one(y, describe(degs[:1])),
                        "kernel_deblur": tool.run(y, seed=0)}
                oracle = wiener_deconvolve(y, sigma * SHRINK, balance_for(noise)).clamp(0, 1) \
                    if sigma >= MIN_SIGMA and noise <= MAX_NOISE else y
                outs["kernel_deblur_true_kernel"] = one(oracle, "remove the light noise")
                for b in balances:
                    outs[f"true_kernel_balance_{b:g}"] = one(wiener_deconvolve(y, sigma, b).clamp(0, 1),
                                                             "remove the light noise")
                for k, v in outs.items():
                    got.setdefault(k, []).append(psnr(v, x))
            row = {"sigma": sigma, "noise": noise, "sigma_mae": round(float(np.mean(err_s)), 3),
                   "noise_mae": round(float(np.mean(err_n)), 2)}
            row.update({k: round(float(np.mean(v)), 2) for k, v in got.items()})
            rows.append(row)
            log(json.dumps(row) + f" ({time.time() - t0:.0f}s)")
    return {"photos": [p for p, _ in photos], "crop": crop, "rows": rows}


def deblur_markdown(result: dict) -> str:
    cols = [k for k in result["rows"][0] if k not in ("sigma", "noise", "sigma_mae", "noise_mae")]
    head = "| blur sigma (px) | noise (1/255) | " + " | ".join(cols) + " | estimator error: sigma px / noise |\n"
    head += "|" + "---|" * (len(cols) + 3) + "\n"
    lines = [f"| {r['sigma']:g} | {r['noise']:g} | " + " | ".join(f"{r[c]:.2f}" for c in cols)
             + f" | {r['sigma_mae']:.2f} / {r['noise_mae']:.1f} |" for r in result["rows"]]
    mean = {c: float(np.mean([r[c] for r in result["rows"]])) for c in cols}
    lines.append("| mean | | " + " | ".join(f"**{mean[c]:.2f}**" for c in cols) + " | |")
    return head + "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- text ablation
WRONG_ORDER = ("jpeg", "haze", "noise", "lowres", "blur", "lowlight", "motion")


def wrong_text(degs: list[deg.Degradation]) -> str:
    """A restoration text naming two degradations the image does NOT have (moderate severity)."""
    present = {deg.LABEL[d.kind] for d in degs}
    if present & {"blur", "motion"}:
        present |= {"blur", "motion"}
    absent = [k for k in WRONG_ORDER if k not in present][:2]
    return describe([deg.make(k, 0.5) for k in absent])


def ablation_mixtures(n_photos: int, per_photo: int) -> list[list[list[deg.Degradation]]]:
    """Seeded mixtures of two or three degradations, ``per_photo`` for each photo."""
    return [[deg.sample(torch.Generator().manual_seed(5000 + 100 * i + j), p_clean=0.0, p_mix=1.0)
             for j in range(per_photo)] for i in range(n_photos)]


CONTROL_DEGS = {"noise": deg.make("noise", (25 - 3) / 47), "blur": deg.make("blur", (2 - 0.6) / 3.0)}


def text_ablation(model_path: str | None = None, data: str | None = None, split: str = "validation", crop: int = 256,
                  steps: int = DEFAULT_STEPS, per_photo: int = 2, log=print) -> dict:
    """No text vs correct vs wrong text on mixtures, and noise-only vs blur-only controllability."""
    restorer = Restorer(load_model(model_path))
    photos = sorted(evaluation_photos(data, split).items())
    mixes = ablation_mixtures(len(photos), per_photo)
    t0 = time.time()
    mix_scores: dict[str, list[float]] = {"input": [], "no text": [], "correct text": [], "wrong text": []}
    examples = []
    ctrl: dict[str, dict[str, list[float]]] = {}
    diffs = []
    for i, (pid, arr) in enumerate(photos):
        x = center_crop(arr, crop)
        for j, degs in enumerate(mixes[i]):
            y = deg.apply(x, degs, torch.Generator().manual_seed(7000 + 100 * i + j))
            img = y.permute(1, 2, 0)[None]
            texts = {"no text": "", "correct text": describe(degs), "wrong text": wrong_text(degs)}
            mix_scores["input"].append(psnr(y, x))
            row = {"photo": pid, "degradations": [(d.kind, round(d.severity, 2)) for d in degs], "texts": texts}
            for name, t in texts.items():
                out = restorer.restore(img, t, steps=steps, seed=i)[0].permute(2, 0, 1)
                mix_scores[name].append(psnr(out, x))
                row[name] = round(mix_scores[name][-1], 2)
            examples.append(row)
        # Controllability: noise + blur; targets keep the other degradation (same noise sample).
        both = [CONTROL_DEGS["blur"], CONTROL_DEGS["noise"]]
        seed = 9000 + i
        y = deg.apply(x, both, torch.Generator().manual_seed(seed))
        refs = {"noise removed (blur kept)": deg.apply(x, [CONTROL_DEGS["blur"]]),
                "blur removed (noise kept)": deg.apply(x, [CONTROL_DEGS["noise"]], torch.Generator().manual_seed(seed)),
                "clean": x}
        texts = {"no text": "", "noise only: " + describe([CONTROL_DEGS["noise"]]): describe([CONTROL_DEGS["noise"]]),
                 "blur only: " + describe([CONTROL_DEGS["blur"]]): describe([CONTROL_DEGS["blur"]]),
                 "both: " + describe(both): describe(both)}
        outs = {}
        img = y.permute(1, 2, 0)[None]
        for name, t in texts.items():
            outs[name] = restorer.restore(img, t, steps=steps, seed=i)[0].permute(2, 0, 1)
        outs = {"input": y, **outs}
        for name, out in outs.items():
            for rname, ref in refs.items():
                ctrl.setdefault(name, {}).setdefault(rname, []).append(psnr(out, ref))
        n_out, b_out = list(outs.values())[2], list(outs.values())[3]
        diffs.append(float((n_out - b_out).abs().mean() * 255))
        log(f"{pid}: done ({time.time() - t0:.0f}s)")
    mean = lambda v: round(float(np.mean(v)), 2)  # noqa: E731
    return {"photos": [p for p, _ in photos], "crop": crop, "steps": steps, "per_photo": per_photo,
            "mixtures": {k: mean(v) for k, v in mix_scores.items()},
            "control": {k: {r: mean(v) for r, v in row.items()} for k, row in ctrl.items()},
            "control_mean_abs_diff": round(float(np.mean(diffs)), 2), "examples": examples}


def ablation_markdown(result: dict) -> str:
    """The text ablation as two Markdown tables."""
    m = result["mixtures"]
    lines = [f"Mixed degradations ({len(result['examples'])} images: {result['per_photo']} random mixtures of 2-3 "
             f"degradations per held-out photo, {result['crop']} px crops, {result['steps']} step(s)); PSNR dB vs clean:",
             "", "| text | PSNR | vs no text (dB) |", "|---|---|---|"]
    for k, v in m.items():
        lines.append(f"| {k} | {v:.2f} | {v - m['no text']:+.2f} |" if k != "input" else f"| (degraded input) | {v:.2f} | |")
    refs = list(next(iter(result["control"].values())))
    lines += ["", f"Controllability on noise (sigma 25) + Gaussian blur (sigma 2); PSNR dB against each target; "
              f"mean |noise-only output - blur-only output| = {result['control_mean_abs_diff']:.2f} / 255:", "",
              "| text | " + " | ".join(refs) + " |", "|---|" + "---|" * len(refs)]
    for k, row in result["control"].items():
        lines.append(f"| {k if k != 'input' else '(degraded input)'} | " + " | ".join(f"{row[r]:.2f}" for r in refs) + " |")
    return "\n".join(lines) + "\n"
# ---------------------------------------------------------------------------- automatic restore
# Held-out mixes for ``eval --auto``: common pairs and triples (different severities and noise
# from the plan-orders measurement, which uses seed 0; these use seed 1).
AUTO_SETS = [("jpeg", "noise"), ("blur", "noise"), ("haze", "noise"), ("lowlight", "noise"), ("jpeg", "lowres"),
             ("blur", "jpeg", "noise"), ("jpeg", "motion", "noise"), ("jpeg", "lowres", "noise"),
             ("blur", "haze", "noise"), ("jpeg", "lowlight", "noise")]


class GatedDeblur:
    """Restorer-like: the kernel-aware deblur where the automatic restore's defocus gate passes
    (:func:`m3unet.auto.guards.estimator_reads_defocus`), else ``fallback``."""

    def __init__(self, tool, fallback, policy: RestorePolicy = DEFAULT_POLICY):
        self.tool, self.fallback, self.policy = tool, fallback, policy

    def restore(self, image: torch.Tensor, text: str = "", steps: int = 1, seed: int = 0, **kw) -> torch.Tensor:
        est = self.tool.reading(image[0].permute(2, 0, 1))
        if self.policy.defocus_gate and guards.estimator_reads_defocus(est, self.tool.would_deconvolve(est),
                                                                       self.policy):
            return self.tool.restore(image, seed=seed, sigma=est.sigma, noise=est.noise)
        return self.fallback.restore(image, text, steps=steps, seed=seed, **kw)


def auto_evaluation(model_path: str | None = None, data: str | None = None, split: str = "validation", crop: int = 256, per_set: int = 3,
                    classifier_path: str | None = None, budget: int = 4, seed: int = 1,
                    sets: list[tuple[str, ...]] | None = None, pool: list[str] | None = None,
                    steps: int | None = None, kernel_deblur: bool = True, specialists: bool = True,
                    policy: RestorePolicy = DEFAULT_POLICY, fixed_orders: bool = True, log=print) -> dict:
    """Automatic restore vs one blind M3UNet pass vs the best fixed order, on held-out mixes.

    ``pool``: extra pool models as ``FILE=TASK[,TASK]`` (as ``restore --pool``). ``steps``: sampler
    steps of every M3UNet pass of the automatic restore and of the fixed orders (None: per task, as
    the automatic restore's default, the policy's ``task_steps``); the blind pass takes 1.

    For every mix, every order of single-task M3UNet passes is run (:func:`m3unet.evaluation.orders.restore_orders`);
    the *best fixed order* of a set is the order with the best mean PSNR over that set's mixes, the
    *oracle* the best order per mix. *planned (true labels)* is the planner's order of the true
    degradations, which isolates the order table from the classifier. *auto* is the full automatic
    restore (classifier -> plan -> M3UNet steps -> re-classify, rollback). Also: clean photos and
    near-clean photos (JPEG quality 90) through auto restore, to check it does no harm.
    """
    from ..auto.restorer import classifier_or_shipped
    from .orders import degrade, m3unet_runner, mix_instances, restore_orders, weights_hash
    from ..auto.plan import order_tasks
    from ..core.weights import DEFAULT_WEIGHTS

    path = Path(model_path) if model_path else DEFAULT_WEIGHTS
    restorer = Restorer(load_model(path))
    classifier = classifier_or_shipped(classifier_path)
    cname = Path(classifier_path).name if classifier_path else "shipped"
    if classifier is None:
        log("note: no classifier weights: the auto column is a blind M3UNet pass")
        cname = "none (blind fallback)"
    from ..auto.pool import load_pool_model, parse_pool_arg
    from ..auto.deblur import KernelDeblur
    extra = [load_pool_model(*parse_pool_arg(a)) for a in pool or []]
    auto = build_auto_restorer(restorer, model_path=model_path, classifier=classifier, pool_models=extra,
                               kernel_deblur=kernel_deblur, specialists=specialists, steps=steps, policy=policy)
    models = list(auto.pool.models.values())
    # Fixed orders use the same models per task as the pool offers: an M3UNet specialist runs the
    # steps of its tasks (so the comparison is about order and detection, not about models); a
    # solo specialist does not (it serves images with its degradation alone, and these are mixes), nor
    # does the small-print one (images under the classifier's minimum side only).
    from ..auto.pool import M3UNetPoolModel, describe_steps
    by_task = {t: m.restorer for m in models if isinstance(m, M3UNetPoolModel) and not (m.solo or m.small)
               for t in m.tasks}
    # The fixed orders' blur steps deblur as the automatic restore's defocus step would: with the
    # kernel-aware deblur where its gate passes (m3unet.auto.deblur.KernelDeblur.gate), else M3UNet.
    tool = next((m for m in models if isinstance(m, KernelDeblur)), None)
    if tool is not None:
        by_task["blur"] = GatedDeblur(tool, by_task.get("blur", restorer), policy)
    run = m3unet_runner(restorer, by_task=by_task, steps=steps)
    photos = evaluation_photos(data, split)
    ids = sorted(photos)
    rows, t0 = [], time.time()
    for k, inst in enumerate(mix_instances(sets or AUTO_SETS, ids, per_set, seed)):
        clean = center_crop(photos[inst.photo], crop)
        y = degrade(clean, inst)
        orders = restore_orders(run, y, inst.degs, clean) if fixed_orders else {}
        planned = tuple(order_tasks(inst.tasks))
        res = auto.run(y.permute(1, 2, 0)[None], budget=budget, seed=k)
        res0 = auto.run(y.permute(1, 2, 0)[None], budget=budget, seed=k, retry=False) if res.reports[0].retry else res
        rows.append({"set": "+".join(inst.tasks), "photo": inst.photo,
                     "degradations": [(d.kind, round(d.severity, 2)) for d in inst.degs],
                     "input": psnr(y, clean), "single_blind": psnr(run(y, ""), clean),
                     "orders": {">".join(o): v for o, v in orders.items()},
                     "planned_true": orders.get(planned, float("nan")),
                     "auto": psnr(res.image[0].permute(2, 0, 1), clean),
                     "auto_no_retry": psnr(res0.image[0].permute(2, 0, 1), clean),
                     "retry": res.reports[0].retry.code if res.reports[0].retry else None,
                     "auto_steps": [(s.task, s.outcome) for s in res.reports[0].steps],
                     "detected": res.reports[0].detected_labels})
        best_order = f"{max(orders.values()):.2f}" if orders else "-"
        log(f"{k + 1}: {rows[-1]['set']} on {inst.photo}: input {rows[-1]['input']:.2f}, blind "
            f"{rows[-1]['single_blind']:.2f}, best order {best_order}, auto {rows[-1]['auto']:.2f} "
            f"({time.time() - t0:.0f}s)")
    by_set: dict[str, list[dict]] = {}
    for r in rows:
        by_set.setdefault(r["set"], []).append(r)
    for rs in by_set.values():
        if not fixed_orders:
            for r in rs:
                r["best_fixed"], r["best_fixed_order"], r["oracle"] = float("nan"), "-", float("nan")
            continue
        best = max(rs[0]["orders"], key=lambda o: np.mean([r["orders"][o] for r in rs]))
        for r in rs:
            r["best_fixed"], r["best_fixed_order"] = r["orders"][best], best
            r["oracle"] = max(r["orders"].values())
    clean_rows = []
    for k, pid in enumerate(ids):
        x = center_crop(photos[pid], crop)
        near = deg.apply_one(x, deg.make("jpeg", 0.0, quality=90))
        for kind, img in (("clean", x), ("jpeg90", near)):
            res = auto.run(img.permute(1, 2, 0)[None], budget=budget, seed=k)
            out = res.image[0].permute(2, 0, 1)
            clean_rows.append({"photo": pid, "kind": kind, "input": psnr(img, x), "auto": psnr(out, x),
                               "changed": not torch.equal(out, img),
                               "kept": [s.task for s in res.reports[0].steps if s.outcome == "kept"]})
    methods = ["input", "single_blind", "planned_true", "best_fixed", "oracle", "auto_no_retry", "auto"]
    mean = {m: round(float(np.mean([r[m] for r in rows])), 3) for m in methods}
    sets = {s: {m: round(float(np.mean([r[m] for r in rs])), 2) for m in methods} | {"n": len(rs),
            "best_fixed_order": rs[0]["best_fixed_order"]} for s, rs in by_set.items()}
    return {"weights_file": path.name, "weights_sha256": weights_hash(path), "classifier": cname,
            "pool": ["m3unet"] + [m.describe() for m in models],
            "sampler_steps": describe_steps(steps),
            "policy": {k: v for k, v in policy.to_dict().items() if v != DEFAULT_POLICY.to_dict()[k]},
            "split": split, "photos": ids, "crop": crop, "per_set": per_set, "budget": budget, "seed": seed,
            "seconds": round(time.time() - t0), "mean": mean, "sets": sets, "rows": rows, "clean": clean_rows}


def auto_markdown(result: dict) -> str:
    """The ``eval --auto`` tables and how they compare with the automatic restore's targets."""
    m = result["mean"]
    cols = ["input", "single_blind", "planned_true", "best_fixed", "oracle", "auto_no_retry", "auto"]
    head = ("| mix | n | " + " | ".join(cols) + " | best fixed order |\n|---|---|" + "---|" * (len(cols) + 1) + "\n")
    lines = [f"| {s} | {v['n']} | " + " | ".join(f"{v[c]:.2f}" for c in cols) + f" | {v['best_fixed_order'].replace('>', ' > ')} |"
             for s, v in result["sets"].items()]
    lines.append(f"| **mean** | {sum(v['n'] for v in result['sets'].values())} | "
                 + " | ".join(f"**{m[c]:.2f}**" for c in cols) + " | |")
    pool = ", ".join(result.get("pool", ["m3unet"]))
    out = [f"M3UNet weights `{result['weights_file']}` (sha256 {result['weights_sha256'][:12]}...), classifier: "
           f"{result['classifier']}, pool: {pool}; {result['per_set']} held-out photos per mix, centre crops {result['crop']} px, "
           f"step budget {result['budget']}, sampler steps per M3UNet pass: {result.get('sampler_steps', 1)}; PSNR dB", "", head + "\n".join(lines), ""]
    gain, gap = m["auto"] - m["single_blind"], m["best_fixed"] - m["auto"]
    out.append(f"- auto vs one blind M3UNet pass: {gain:+.2f} dB (target >= +0.5): {'met' if gain >= 0.5 else 'not met'}")
    if not np.isnan(m["best_fixed"]):
        out.append(f"- auto vs the best fixed order: {-gap:+.2f} dB (target: within 0.3 dB): "
                   f"{'met' if gap <= 0.3 else 'not met'}")
        out.append(f"- planned order with the true labels vs the best fixed order: "
                   f"{m['planned_true'] - m['best_fixed']:+.2f} dB")
    out.append(f"- the retry with rolled-back degradations first: {m['auto'] - m['auto_no_retry']:+.2f} dB "
               f"({sum(1 for r in result['rows'] if r['retry'])} of {len(result['rows'])} mixes retried)")
    for kind in ("clean", "jpeg90"):
        rs = [r for r in result["clean"] if r["kind"] == kind]
        changed = [r for r in rs if r["changed"]]
        if kind == "clean":
            kept = sorted({t for r in changed for t in r["kept"]})
            out.append(f"- clean photos: {len(rs) - len(changed)}/{len(rs)} returned unchanged"
                       + (f"; the {len(changed)} changed ones are at {np.mean([r['auto'] for r in changed]):.2f} dB "
                          f"vs the clean photo (steps kept: {', '.join(kept)})" if changed else " (no loss)"))
        else:
            loss = float(np.mean([r["input"] - r["auto"] for r in rs]))
            out.append(f"- near-clean photos (JPEG q90, input {np.mean([r['input'] for r in rs]):.2f} dB): auto "
                       f"{np.mean([r['auto'] for r in rs]):.2f} dB, mean loss {loss:+.2f} dB (target <= 0.5): "
                       f"{'met' if loss <= 0.5 else 'not met'}; {len(changed)}/{len(rs)} changed")
    return "\n".join(out) + "\n"


def auto_main(args) -> int:
    """``python -m m3unet eval --auto`` (and ``--auto-rules``)."""
    import os
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", 2))))
    if getattr(args, "auto_rules", False):
        res = step_decisions(args.model, args.data, args.split, args.crop, args.classifier)
        print("\n" + step_decisions_markdown(res))
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1))
        return 0
    sets = None
    if args.mixes:
        from ..auto.plan import TASKS
        sets = [tuple(sorted(m.split("+"))) for m in args.mixes.split(",")]
        bad = [t for m in sets for t in m if t not in TASKS]
        if bad:
            raise ValueError(f"--mixes: unknown task(s) {bad}; use {', '.join(TASKS)} joined by '+'")
    result = auto_evaluation(args.model, args.data, args.split, args.crop, args.per_set, args.classifier, args.budget,
                             seed=args.mix_seed, sets=sets, pool=args.pool, steps=args.pool_steps,
                             kernel_deblur=not args.no_kernel_deblur, specialists=not args.no_specialists,
                             policy=_policy(args), fixed_orders=not getattr(args, "no_orders", False))
    print("\n" + auto_markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


def step_decisions(model_path: str | None = None, data: str | None = None, split: str = "validation", crop: int = 256,
                   classifier_path: str | None = None, seed: int = 0, log=print) -> dict:
    """How well rules for keeping or rolling back a step agree with PSNR (``eval --auto-rules``).

    On one held-out mix per task set of ``plan-orders`` (seed 0, not the ``eval --auto`` mixes),
    the true tasks run in the planner's order; at each stage one step for a task the image does
    NOT have is also tried. Every step is read by the classifier before and after and scored by
    PSNR. Each rule is judged by the dB it would keep and the harmful steps it would let through.
    """
    import random

    from ..auto import restorer as ar
    from ..auto.scoring import degradation_score, effect
    from .orders import degrade, mix_instances, task_of, task_sets
    from ..auto.plan import TASKS, order_tasks

    restorer = Restorer(load_model(model_path))
    classifier = ar.classifier_or_shipped(classifier_path)
    if classifier is None:
        raise ValueError("--auto-rules needs a classifier: give --classifier FILE (no shipped weights found)")
    photos = evaluation_photos(data, split)
    ids = sorted(photos)
    rng = random.Random(seed)
    read = lambda t: classifier(t.permute(1, 2, 0)[None])[0]  # noqa: E731
    from ..auto.pool import steps_for
    run = lambda t, text, task: restorer.restore(t.permute(1, 2, 0)[None], text,  # noqa: E731
                                                 steps=steps_for(task, None))[0].permute(2, 0, 1)
    trials, t0 = [], time.time()
    for i, inst in enumerate(mix_instances(task_sets(), ids, 1, seed)):
        clean = center_crop(photos[inst.photo], crop)
        cur = degrade(clean, inst)
        by = {task_of(d): d for d in inst.degs}
        fcur = read(cur)
        for t in order_tasks(by):
            wrong = rng.choice([a for a in TASKS if a not in by])
            for task, text, true in ((t, describe([by[t]]), True),
                                     (wrong, describe([deg.make(wrong, 0.5, torch.Generator().manual_seed(i))]), False)):
                y = run(cur, text, task)
                fy = read(y)
                trials.append({"task": task, "true": true, "gain_db": psnr(y, clean) - psnr(cur, clean),
                               "before": fcur, "after": fy, "y": y if true else None})
            cur, fcur = trials[-2]["y"], trials[-2]["after"]
        log(f"{i + 1}: {'+'.join(inst.tasks)} ({time.time() - t0:.0f}s)")
    total = degradation_score
    gain = DEFAULT_POLICY.min_gain

    def own_rule(weight: float):
        def rule(r) -> bool:
            e = effect(r["before"], r["after"], r["task"])
            return e.own_drop >= gain and e.own_drop - weight * e.side_rise > 0
        return rule

    rules = {"total score drops by min_gain": lambda r: total(r["after"]) < total(r["before"]) - gain}
    for w in (0.0, 0.25, 0.5, 1.0):
        shipped = " (shipped)" if w == DEFAULT_POLICY.side_weight else ""
        rules[f"own drops by min_gain, side effects at weight {w}{shipped}"] = own_rule(w)
    rules["shipped accept()"] = lambda r: guards.accept(
        effect(r["before"], r["after"], r["task"], DEFAULT_POLICY.side_weight), False)
    good = [r for r in trials if r["gain_db"] > 0.1]
    bad = [r for r in trials if r["gain_db"] < -0.1]
    table = {}
    for name, rule in rules.items():
        kept = [r for r in trials if rule(r)]
        table[name] = {"kept_db": round(sum(r["gain_db"] for r in kept), 1),
                       "helpful_kept": sum(1 for r in good if rule(r)),
                       "harmful_kept": sum(1 for r in bad if rule(r)),
                       "harmful_kept_db": round(sum(r["gain_db"] for r in bad if rule(r)), 1),
                       "wrong_task_kept": sum(1 for r in kept if not r["true"])}
    return {"classifier": classifier_path or "shipped", "trials": len(trials), "helpful": len(good),
            "harmful": len(bad), "wrong_task_trials": sum(1 for r in trials if not r["true"]),
            "possible_db": round(sum(r["gain_db"] for r in good), 1), "rules": table,
            "seconds": round(time.time() - t0)}


def step_decisions_markdown(res: dict) -> str:
    lines = [f"classifier: {res['classifier']}; {res['trials']} trial steps ({res['wrong_task_trials']} for a "
             f"degradation the image does not have); {res['helpful']} helpful (> +0.1 dB, together "
             f"+{res['possible_db']} dB), {res['harmful']} harmful (< -0.1 dB)", "",
             "| rule for keeping a step | dB kept | helpful kept | harmful kept (dB) | wrong-task steps kept |",
             "|---|---|---|---|---|"]
    for name, v in res["rules"].items():
        lines.append(f"| {name} | {v['kept_db']:+.1f} | {v['helpful_kept']} / {res['helpful']} | "
                     f"{v['harmful_kept']} / {res['harmful']} ({v['harmful_kept_db']:+.1f}) | {v['wrong_task_kept']} |")
    return "\n".join(lines) + "\n"
