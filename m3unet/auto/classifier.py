"""DegradationClassifier: which degradations an image has, and how severe each is.

A small CNN reads several native-resolution crops (pixel-level evidence: noise, JPEG blocks,
blur and motion kernels, up-sampling) and a small down-scaled view of the whole image plus its
colour statistics (global evidence: haze, low light). Every crop gives, for each label in
:data:`LABELS`, a logit, a severity and an evidence weight; the crops are pooled per label by a
softmax over their evidence weights (attention pooling, so any number of crops works and flat,
uninformative crops count little). Crops sit on the 8x8 JPEG grid of the image so that block
artefacts appear at the same place in every crop.

Trained on the synthetic degradations of :mod:`m3unet.training.synthesis`
(:func:`m3unet.training.classifier.train_classifier`); in the spirit of the degradation-aware
prompts of SeeSR and DA-CLIP's degradation embedding, but small and fast (well under 0.1 s per
megapixel on a CPU). Its restoration text is the canonical phrasing M3UNet is trained on
(:func:`m3unet.core.text.describe`), most severe first.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.image import luminance
from ..core.degradations import LABELS, Degradation, LABEL, level

DEFAULT_CLASSIFIER = Path(__file__).resolve().parents[2] / "weights" / "classifier-default.safetensors"
JPEG_BLOCK = 8


class ClassifierError(ValueError):
    """A classifier input or file that cannot be used; the message names it and the fix."""


@dataclass
class ClassifierConfig:
    """Architecture and views. ``crops`` is the number of crops read at inference."""
    widths: list[int] = field(default_factory=lambda: [16, 32, 48, 64])
    global_widths: list[int] = field(default_factory=lambda: [16, 32, 64])
    hidden: int = 128
    crop: int = 64
    crops: int = 16
    global_size: int = 32
    crop_stats: bool = True  # hand-crafted blur statistics per crop (see :func:`crop_statistics`)
    image_head: bool = True  # an image-level head on pooled crop statistics (needs crop_stats)
    image_labels: list[str] = field(default_factory=lambda: ["blur", "motion", "lowres"])  # what it decides
    image_hidden: int = 0  # hidden units of the image-level head (0: hidden // 2)
    # The image-level head also reads the crops' power spectrum (:func:`spectrum_statistics`) and
    # the crop-level probabilities of every label (context: noise or JPEG on top hides a blur).
    spectrum: bool = False
    # Labels judged by a photometric head that reads the colour statistics only (exposure is a
    # property of the luminance distribution; texture changes made by other steps, such as
    # M3UNet's smooth denoised output, must not hide it). Not also image labels.
    photometric_labels: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> "ClassifierConfig":
        known = {f.name for f in fields(cls)}
        d = {"crop_stats": False, "image_head": False, "spectrum": False} | dict(d)  # files older than these
        return cls(**{k: v for k, v in d.items() if k in known})


def _cbr(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    """Conv 3x3 -> BatchNorm -> GELU. BatchNorm keeps the tiny pixel-level signals (light noise, a
    slight blur) alive through the stack; without it they vanish under the biases."""
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU()]


def _stack(cin: int, stem: int, widths: list[int]) -> nn.Sequential:
    layers = _cbr(cin, stem)
    for a, b in zip([stem] + widths[:-1], widths):
        layers += _cbr(a, b, 2) + _cbr(b, b)
    return nn.Sequential(*layers)


def high_pass(x: torch.Tensor) -> torch.Tensor:
    """``x`` minus its 3x3 box mean (reflect border): the fine detail where noise, JPEG and blur show."""
    return x - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


N_CROP_STATS = 17


def crop_statistics(crops: torch.Tensor) -> torch.Tensor:
    """Blur statistics of ``[N, 3, c, c]`` crops -> ``[N, 17]`` (classic sharpness measures).

    Per scale (1, 2, 4 px): log gradient energy, structure-tensor coherence (motion blur makes
    gradients one-directional) and log Laplacian energy; the log ratios of directional gradient
    energies between scales (min/max over 4 directions: motion blur removes the fine gradients
    along its path only; defocus and down-sampling remove them in every direction, down-sampling
    with a sharper cut-off) and the crop's luminance mean and contrast.
    """
    lum = luminance(crops)[:, None]
    feats, directional = [], []
    for s in (1, 2, 4):
        x = F.avg_pool2d(lum, s) if s > 1 else lum
        gx = (x[..., :, 1:] - x[..., :, :-1])[..., :-1, :]
        gy = (x[..., 1:, :] - x[..., :-1, :])[..., :, :-1]
        exx, eyy, exy = gx.pow(2).mean((1, 2, 3)), gy.pow(2).mean((1, 2, 3)), (gx * gy).mean((1, 2, 3))
        energy = exx + eyy + 1e-8
        lap = (4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2]
               - x[..., 1:-1, 2:]).pow(2).mean((1, 2, 3))
        directional.append(torch.stack([exx, eyy, (exx + eyy) / 2 + exy, (exx + eyy) / 2 - exy], 1).clamp(min=0) + 1e-8)
        feats += [energy.log(), torch.sqrt((exx - eyy) ** 2 + 4 * exy ** 2) / energy, (lap + 1e-8).log()]
    r12 = (directional[0] / directional[1]).log()
    r24 = (directional[1] / directional[2]).log()
    feats += [r12.amin(1), r12.amax(1), r24.amin(1), r24.amax(1),
              (directional[0].sum(1) / directional[1].sum(1)).log(),
              (directional[1].sum(1) / directional[2].sum(1)).log(),
              lum.mean((1, 2, 3)), lum.std((1, 2, 3))]
    return torch.stack(feats, 1)


SPECTRUM_BANDS = 16
N_SPECTRUM = 3 * SPECTRUM_BANDS + 2


def spectrum_statistics(crops: torch.Tensor) -> torch.Tensor:
    """Power-spectrum shape of ``[B, K, 3, c, c]`` crops -> ``[B, N_SPECTRUM]`` (rotation invariant).

    Welch's method: the luminance of each crop, mean removed, Hann-windowed, its periodogram
    averaged over the K crops. In :data:`SPECTRUM_BANDS` radial frequency bands it gives
    (1) the log power whitened by the natural-image 1/f^2 law and centred over the bands (its shape:
    defocus blur bends it down smoothly, bicubic up-sampling falls off a cliff at 1/scale of the
    Nyquist frequency and leaves faint replicas above it, noise lifts a flat floor), (2) the
    anisotropy of the band, |sum P e^{2i theta}| / sum P (motion blur removes one direction), and
    (3) the log power ratio between the band's weakest direction, taken from the whole spectrum, and
    the perpendicular one (the sinc notches of a motion path); plus the log total power (contrast)
    and the 8x8 block peak strength (JPEG, whose blocks sit on the crop grid, lifts it).
    """
    b, k, _, c, _ = crops.shape
    lum = luminance(crops)
    lum = lum - lum.mean((-2, -1), keepdim=True)
    win = torch.hann_window(c, periodic=False, dtype=lum.dtype, device=lum.device)
    power = torch.fft.fft2(lum * (win[:, None] * win[None, :])).abs().pow(2).mean(1)  # [B, c, c]
    f = torch.fft.fftfreq(c, dtype=lum.dtype, device=lum.device)
    fy, fx = f[:, None].expand(c, c), f[None, :].expand(c, c)
    r = torch.sqrt(fx ** 2 + fy ** 2)
    phasor = torch.polar(torch.ones_like(r), 2 * torch.atan2(fy, fx))  # direction, folded to [0, pi)
    edges = torch.linspace(1.5 / c, 0.5, SPECTRUM_BANDS + 1, dtype=lum.dtype, device=lum.device)
    band = torch.bucketize(r, edges) - 1  # -1: DC and lowest frequencies, SPECTRUM_BANDS: corners
    onehot = F.one_hot(band.clamp(-1, SPECTRUM_BANDS).add(1).flatten(), SPECTRUM_BANDS + 2)[:, 1:-1].to(lum.dtype)
    flat = power.reshape(b, -1) + 1e-12
    band_power = flat @ onehot / onehot.sum(0)  # [B, bands]
    centres = (edges[1:] + edges[:-1]) / 2
    whitened = band_power.log() + 2 * centres.log()
    whitened = whitened - whitened.mean(1, keepdim=True)
    band_phasor = (flat.to(phasor.dtype) * phasor.flatten()) @ onehot.to(phasor.dtype)  # [B, bands]
    anisotropy = band_phasor.abs() / (band_power * onehot.sum(0))
    # Direction of least power over the mid and high bands (half the phasor angle is the strongest
    # direction; the weakest is perpendicular to it), then power near it vs near its perpendicular.
    strong = torch.angle(band_phasor[:, SPECTRUM_BANDS // 4:].sum(1)) / 2  # [B]
    theta = torch.atan2(fy, fx).flatten()
    cos2 = torch.cos(2 * (theta[None] - strong[:, None]))  # 1 along the strong direction, -1 across
    along, across = (cos2 > 0.7).to(lum.dtype), (cos2 < -0.7).to(lum.dtype)
    p_along = (flat * along) @ onehot / (along @ onehot).clamp(min=1)
    p_across = (flat * across) @ onehot / (across @ onehot).clamp(min=1)
    notch = (p_across + 1e-12).log() - (p_along + 1e-12).log()
    step = c // JPEG_BLOCK
    peaks = [(0, i * step) for i in range(1, JPEG_BLOCK // 2 + 1)] + [(i * step, 0) for i in range(1, JPEG_BLOCK // 2 + 1)]
    peak = torch.stack([power[:, y, x] for y, x in peaks], 1)
    side = torch.stack([(power[:, y, (x + 1) % c] + power[:, (y + 1) % c, x]) / 2 for y, x in peaks], 1)
    block = ((peak + 1e-12).log() - (side + 1e-12).log()).mean(1, keepdim=True)
    total = flat.sum(1, keepdim=True).log() - 2 * math.log(c)
    return torch.cat([whitened, anisotropy, notch, total, block], 1)


def colour_stats(whole: torch.Tensor) -> torch.Tensor:
    """Global photometric statistics of ``[B, 3, g, g]``: channel means/stds, luminance quantiles,
    dark-channel level (haze lifts it) and saturation -> ``[B, 14]``."""
    b = whole.shape[0]
    lum = luminance(whole).reshape(b, -1)
    q = torch.quantile(lum, torch.tensor([0.01, 0.1, 0.5, 0.9, 0.99], dtype=lum.dtype), dim=1).T
    dark = whole.amin(1).reshape(b, -1)
    sat = (whole.amax(1) - whole.amin(1)).reshape(b, -1).mean(1, keepdim=True)
    return torch.cat([whole.mean((2, 3)), whole.std((2, 3)), q, dark.mean(1, keepdim=True),
                      torch.quantile(dark, 0.1, dim=1)[:, None], sat], 1)


class DegradationClassifier(nn.Module):
    """Local (crop) and global (whole image) CNN branches -> per-label logits and severities."""

    N_STATS = 14

    def __init__(self, config: ClassifierConfig | None = None):
        super().__init__()
        cfg = self.config = config or ClassifierConfig()
        w, gw = cfg.widths, cfg.global_widths
        # Local branch at full resolution (stem without stride): RGB and its high-pass.
        self.local = _stack(6, w[0], w)
        self.glob = _stack(3, gw[0], gw)
        feat = 2 * w[-1] + 2 * gw[-1] + self.N_STATS + (N_CROP_STATS if cfg.crop_stats else 0)
        self.stats_norm = nn.BatchNorm1d(N_CROP_STATS) if cfg.crop_stats else None
        self.head = nn.Sequential(nn.Linear(feat, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, 3 * len(LABELS)))
        self.image_head = None
        # Fixed standardisation of the spectrum statistics (set from training data by fit_heads).
        self.spec_norm = nn.BatchNorm1d(N_SPECTRUM, affine=False) if cfg.spectrum else None
        if cfg.image_head:
            n = len(cfg.image_labels)
            self.register_buffer("image_index", torch.tensor([LABELS.index(k) for k in cfg.image_labels]),
                                 persistent=False)
            h = cfg.image_hidden or cfg.hidden // 2
            n_in = self.N_STATS + 4 * N_CROP_STATS + (N_SPECTRUM + len(LABELS) if cfg.spectrum else 0)
            self.image_head = nn.Sequential(nn.Linear(n_in, h), nn.GELU(),
                                            nn.Linear(h, 2 * n))
            nn.init.zeros_(self.image_head[-1].weight)
            nn.init.zeros_(self.image_head[-1].bias)
        self.photo_head = None
        if cfg.photometric_labels:
            self.register_buffer("photo_index", torch.tensor([LABELS.index(k) for k in cfg.photometric_labels]),
                                 persistent=False)
            self.photo_head = nn.Sequential(nn.Linear(self.N_STATS, 32), nn.GELU(),
                                            nn.Linear(32, 2 * len(cfg.photometric_labels)))
            nn.init.zeros_(self.photo_head[-1].weight)
            nn.init.zeros_(self.photo_head[-1].bias)

    @staticmethod
    def _pool(f: torch.Tensor) -> torch.Tensor:
        return torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)

    def features(self, crops: torch.Tensor, whole: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The two CNN branches and the statistics: crop features [B, K, F], global features [B, G],
        normalised crop statistics [B, K, S] (or None) and spectrum statistics [B, N_SPECTRUM] (or None)."""
        b, k = crops.shape[:2]
        x = crops.flatten(0, 1)
        loc = self._pool(self.local(torch.cat([x * 2 - 1, high_pass(x) * 8], 1))).view(b, k, -1)
        glb = torch.cat([self._pool(self.glob(whole * 2 - 1)), colour_stats(whole)], 1)
        st = self.stats_norm(crop_statistics(x)).view(b, k, -1) if self.stats_norm is not None else None
        spec = spectrum_statistics(crops) if self.spec_norm is not None else None
        return loc, glb, st, spec

    def decide(self, loc: torch.Tensor, glb: torch.Tensor, st: torch.Tensor | None,
               spec: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-crop logits pooled by their evidence weights (+ the image-level head) -> logits, severity."""
        b, k = loc.shape[:2]
        parts = [loc, glb[:, None].expand(b, k, glb.shape[1])] + ([st] if st is not None else [])
        logit, sev, evidence = self.head(torch.cat(parts, 2)).chunk(3, dim=2)  # [B, K, L] each
        weight = torch.softmax(evidence, dim=1)
        pooled = (weight * logit).sum(1)
        if self.image_head is None:
            return pooled, (weight * torch.sigmoid(sev)).sum(1)
        # Blur-type labels also get an image-level opinion from the pooled sharpness statistics and
        # the colour statistics (content-agnostic inputs: it must not learn the training photos).
        colour = glb[:, -self.N_STATS:]
        parts = [colour, pool_statistics(st)]
        if self.spec_norm is not None:
            parts += [self.spec_norm(spec), torch.sigmoid(pooled.detach())]
        img = self.image_head(torch.cat(parts, 1))
        n = len(self.config.image_labels)
        add_logit = logit.new_zeros(b, logit.shape[2]).index_copy(1, self.image_index, img[:, :n])
        add_sev = logit.new_zeros(b, logit.shape[2]).index_copy(1, self.image_index, img[:, n:])
        if self.photo_head is not None:
            ph = self.photo_head(colour)
            m = len(self.config.photometric_labels)
            add_logit = add_logit.index_add(1, self.photo_index, ph[:, :m])
            add_sev = add_sev.index_add(1, self.photo_index, ph[:, m:])
        return pooled + add_logit, torch.sigmoid((weight * sev).sum(1) + add_sev)

    def forward(self, crops: torch.Tensor, whole: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``crops`` [B, K, 3, c, c] and ``whole`` [B, 3, g, g] (0-1) -> logits [B, L], severity [B, L]."""
        return self.decide(*self.features(crops, whole))


def pool_statistics(st: torch.Tensor) -> torch.Tensor:
    """Image-level view of the crop statistics ``[B, K, S]``: the mean over crops, the mean of the
    three most textured crops (highest fine-scale gradient energy, where blur shows best), min and max."""
    top = st[..., 0].topk(min(3, st.shape[1]), dim=1).indices
    textured = torch.gather(st, 1, top[..., None].expand(-1, -1, st.shape[2])).mean(1)
    return torch.cat([st.mean(1), textured, st.amin(1), st.amax(1)], 1)


def crop_positions(h: int, w: int, crop: int, k: int, gen: torch.Generator | None = None) -> list[tuple[int, int]]:
    """``k`` top-left corners of ``crop`` px crops on the 8x8 JPEG grid: an even grid (no ``gen``) or random."""
    ny_max, nx_max = (h - crop) // JPEG_BLOCK, (w - crop) // JPEG_BLOCK  # last aligned start / 8
    if gen is not None:
        return [(JPEG_BLOCK * int(torch.randint(0, ny_max + 1, (), generator=gen)),
                 JPEG_BLOCK * int(torch.randint(0, nx_max + 1, (), generator=gen))) for _ in range(k)]
    rows = max(1, min(ny_max + 1, round(math.sqrt(k * h / w))))
    cols = max(1, min(nx_max + 1, math.ceil(k / rows)))
    def spread(n: int, last: int) -> list[int]:  # n aligned starts from 0 to last * 8 (centre if n == 1)
        return [JPEG_BLOCK * round(i * last / (n - 1)) for i in range(n)] if n > 1 else [JPEG_BLOCK * (last // 2)]

    ys, xs = spread(rows, ny_max), spread(cols, nx_max)
    grid = [(y, x) for y in ys for x in xs]
    if len(grid) <= k:
        return grid
    return [grid[round(i * (len(grid) - 1) / (k - 1))] for i in range(k)] if k > 1 else [grid[len(grid) // 2]]


def views(image: torch.Tensor, config: ClassifierConfig, gen: torch.Generator | None = None,
          k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops ``[K, 3, c, c]`` on the JPEG grid (an even grid, or random with ``gen``) and the whole
    view ``[3, g, g]`` of a ``[3, H, W]`` image in [0, 1]. Images smaller than a crop use smaller crops."""
    _, h, w = image.shape
    c = config.crop
    if min(h, w) < c:
        c = max(8, min(h, w) // JPEG_BLOCK * JPEG_BLOCK) if min(h, w) >= 8 else min(h, w)
    pos = crop_positions(h, w, c, k or config.crops, gen)
    crops = torch.stack([image[:, y:y + c, x:x + c] for y, x in pos])
    g = config.global_size
    whole = F.interpolate(image[None], size=(g, g), mode="bilinear", antialias=True, align_corners=False)[0]
    return crops, whole


def targets(degs: list[Degradation]) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-hot labels and severities ``[L]`` of a degradation list (max severity per label)."""
    y = torch.zeros(len(LABELS))
    s = torch.zeros(len(LABELS))
    for d in degs:
        i = LABELS.index(LABEL[d.kind])
        y[i] = 1
        s[i] = max(s[i], d.severity)
    return y, s


@dataclass
class Finding:
    """The classifier's reading of one image: probability and severity (0-1) per label."""
    probabilities: dict[str, float]
    severity: dict[str, float]
    threshold: float = 0.5
    note: str = ""  # a caveat about this reading (e.g. an image under the classifier's minimum side)
    # labels read from the image's spectrum although the network's probability is under the threshold,
    # with what was read (m3unet.auto.reading: motion blur from the cepstrum)
    spectral: dict[str, str] = field(default_factory=dict)
    # the network's logits per label before any decision offset (Classifier.decide_at re-decides from them)
    logits: tuple[float, ...] | None = field(default=None, repr=False, compare=False)
    # labels the network reads that the image's tones rule out, with why (m3unet.auto.reading: low light
    # on a dark scene whose highlights are too bright for under-exposure, haze on an image with deep blacks)
    scene: dict[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """Detected labels, most severe first."""
        found = [k for k, p in self.probabilities.items()
                 if (p >= self.threshold or k in self.spectral) and k not in self.scene]
        return sorted(found, key=lambda k: -self.severity[k])

    def levels(self) -> dict[str, str]:
        """``{label: light|moderate|heavy}`` of the detected labels."""
        return {k: level(self.severity[k]) for k in self.labels}

    def report(self) -> str:
        text = "; ".join(f"{k}: {level(self.severity[k])} (" + (
            f"from the spectrum: {self.spectral[k]}" if k in self.spectral and self.probabilities[k] < self.threshold
            else f"p={self.probabilities[k]:.2f}") + f", severity {self.severity[k]:.2f})"
            for k in self.labels) or "no degradation detected"
        if self.scene:
            text += "; " + "; ".join(f"{k} read (p={self.probabilities[k]:.2f}) but left out: {why}"
                                     for k, why in self.scene.items())
        return text + (f" [{self.note}]" if self.note else "")

    def restoration_text(self) -> str:
        """Canonical restoration text M3UNet was trained on, most severe first (labels are kinds)."""
        from ..core.text import describe
        return describe([Degradation(k, self.severity[k]) for k in self.labels])

    def to_dict(self) -> dict:
        """JSON-ready: probability and severity (0-1) of every label, the detected labels and their levels
        (and ``spectral``: the labels read from the spectrum, with what was read; ``scene``: the labels
        read but left out because the image's tones rule them out, with why)."""
        return {"labels": {k: self.probabilities[k] for k in LABELS},
                "severity": {k: self.severity[k] for k in LABELS},
                "detected": self.labels, "levels": self.levels(), "threshold": self.threshold} | (
                    {"note": self.note} if self.note else {}) | ({"spectral": dict(self.spectral)} if self.spectral else {}) | (
                    {"scene": dict(self.scene)} if self.scene else {})


def default_plan(finding: Finding) -> list[dict]:
    """A simple restoration plan: one M3UNet step per detected label, most severe first.

    Each step is ``{"task", "strength", "model": "m3unet", "text"}`` with the label's level as
    strength and the canonical restoration text for that label alone. The automatic restore uses
    the measured, adaptive ordering of :mod:`m3unet.auto.plan` instead.
    """
    from ..core.text import describe
    return [{"task": k, "strength": level(finding.severity[k]), "model": "m3unet",
             "text": describe([Degradation(k, finding.severity[k])])} for k in finding.labels]


class Classifier:
    """Inference wrapper: IMAGE batches in, :class:`Finding` per image out."""

    def __init__(self, model: DegradationClassifier, threshold: float = 0.5, min_side: int | None = None,
                 calibrated: bool = True):
        self.model = model.eval()
        self.threshold = threshold
        # The smallest short side (px) at which these weights' reading is trusted; the automatic
        # restore does a blind pass below it. Measured per weights (``eval --small-sides``) and
        # recorded in the file's metadata (``fit-classifier-heads --min-side``); 0: no limit.
        meta = getattr(model, "metadata", {}) or {}
        self.min_side = int(meta.get("min_side", 0) or 0) if min_side is None else int(min_side)
        # Per-label decision offsets (logits) chosen on validation images and recorded in the file
        # (``set-classifier-calibration``): a label counts from sigmoid(logit - offset) >= threshold.
        self.calibration = parse_calibration(meta.get("calibration", "")) if calibrated else {}
        self._offsets = torch.tensor([self.calibration.get(k, 0.0) for k in LABELS])

    def offsets_with(self, offsets: Mapping[str, float] | None) -> torch.Tensor:
        """The per-label decision offsets (logits): the file's calibration, with the labels named in
        ``offsets`` taking those values instead."""
        if not offsets:
            return self._offsets
        unknown = sorted(set(offsets) - set(LABELS))
        if unknown:
            raise ClassifierError(f"decision offsets name {', '.join(unknown)}; the labels are {', '.join(LABELS)}")
        return torch.tensor([float(offsets.get(k, self.calibration.get(k, 0.0))) for k in LABELS])

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, offsets: Mapping[str, float] | None = None) -> list[Finding]:
        """Classify an IMAGE batch ``[B, H, W, C]`` (float 0-1 or uint8; grey/RGB/RGBA).

        ``offsets``: per-label decision offsets (logits) used in place of the file's calibration for
        the labels they name (the automatic restore acts on some labels at another decision point
        than the reading's, :attr:`m3unet.auto.policy.RestorePolicy.act_offsets`)."""
        from ..core.image import check_image, to_rgb_float
        image = check_image(image)
        shift = self.offsets_with(offsets)
        device = next(self.model.parameters()).device
        out = []
        for x in image:
            crops, whole = views(to_rgb_float(x.cpu()), self.model.config)
            logits, sev = self.model(crops[None].to(device), whole[None].to(device))
            p = torch.sigmoid(logits[0].cpu() - shift)
            h, w = x.shape[:2]
            note = (f"unreliable: {w}x{h} px is under the {self.min_side} px these weights were measured at"
                    if min(h, w) < self.min_side else "")
            out.append(Finding({k: round(float(v), 4) for k, v in zip(LABELS, p)},
                               {k: round(float(v), 4) for k, v in zip(LABELS, sev[0].cpu())}, self.threshold, note,
                               logits=tuple(float(v) for v in logits[0].cpu())))
        return out

    def decide_at(self, finding: Finding, offsets: Mapping[str, float] | None = None,
                  threshold: float | None = None) -> Finding:
        """The same reading at other decision points, without running the network again: what
        ``self(image, offsets)`` would give (threshold: this classifier's unless given). ``finding``
        must come from a :class:`Classifier` call; labels read from the spectrum are not carried over."""
        if finding.logits is None or len(finding.logits) != len(LABELS):
            raise ClassifierError("decide_at needs a finding made by a Classifier call (it carries the logits)")
        p = torch.sigmoid(torch.tensor(finding.logits) - self.offsets_with(offsets))
        return Finding({k: round(float(v), 4) for k, v in zip(LABELS, p)}, dict(finding.severity),
                       self.threshold if threshold is None else threshold, finding.note, logits=finding.logits)


def save_classifier(model: DegradationClassifier, path, metadata: dict | None = None) -> None:
    """Save weights (safetensors) with the config and label names in the metadata."""
    from safetensors.torch import save_file
    meta = {"m3unet_classifier_config": model.config.to_json(), "labels": json.dumps(LABELS),
            "format": "m3unet-classifier/2"}
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)


def _update_metadata(path, updates: dict[str, str]) -> None:
    """Write ``updates`` into a classifier file's metadata; the tensors are written back unchanged and
    the file is replaced only once the new one is complete."""
    import os
    from safetensors.torch import load_file, save_file

    from ..core.weights import read_metadata
    path = Path(path)
    if not is_classifier_file(path):
        raise ClassifierError(f"{path} is not a DegradationClassifier safetensors file")
    meta = dict(read_metadata(path)) | updates
    tmp = path.with_name(path.name + ".tmp")
    save_file(load_file(str(path)), str(tmp), metadata=meta)
    os.replace(tmp, path)


def record_min_side(path, side: int) -> None:
    """Record ``side`` (px) as the file's minimum trusted side (:attr:`Classifier.min_side`)."""
    if int(side) < 0:
        raise ClassifierError(f"the minimum side must be 0 (no limit) or more; got {side}")
    _update_metadata(path, {"min_side": str(int(side))})


def parse_calibration(text: str) -> dict[str, float]:
    """``"noise=0.5,lowlight=1.2"`` (or the file's JSON object) -> ``{label: logit offset}``; empty: none.
    Raises :class:`ClassifierError` naming a bad entry."""
    text = (text or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            items = list(json.loads(text).items())
        except (ValueError, AttributeError) as e:
            raise ClassifierError(f"calibration {text!r} is not a JSON object of label: offset") from e
    else:
        items = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, eq, value = part.partition("=")
            if not eq:
                raise ClassifierError(f"calibration entry {part!r}: write LABEL=OFFSET, e.g. lowlight=1.2")
            items.append((key.strip(), value.strip()))
    out = {}
    for key, value in items:
        if key not in LABELS:
            raise ClassifierError(f"calibration names {key!r}; the labels are {', '.join(LABELS)}")
        try:
            v = float(value)
        except (TypeError, ValueError) as e:
            raise ClassifierError(f"calibration {key}={value!r}: the offset must be a number (a logit)") from e
        if not math.isfinite(v) or abs(v) > 10:
            raise ClassifierError(f"calibration {key}={v}: the offset is a logit shift between -10 and 10")
        out[key] = v
    return out


def record_calibration(path, offsets: dict[str, float]) -> None:
    """Record per-label decision offsets (logits; :attr:`Classifier.calibration`) in a classifier file;
    labels not named keep offset 0. An empty dict removes the calibration."""
    offsets = parse_calibration(json.dumps(offsets)) if offsets else {}
    _update_metadata(path, {"calibration": json.dumps({k: round(v, 4) for k, v in offsets.items()})})


def is_classifier_file(path) -> bool:
    """True if ``path`` is a readable safetensors file holding a DegradationClassifier."""
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            return "m3unet_classifier_config" in (f.metadata() or {})
    except Exception:  # noqa: BLE001 - any unreadable file is simply not a classifier
        return False


def load_classifier(path=None) -> DegradationClassifier:
    """Load classifier weights (safetensors; default: the shipped ``weights/classifier-default.safetensors``)."""
    from safetensors.torch import load_file

    from ..core.weights import CheckpointError, read_metadata
    path = Path(path) if path else DEFAULT_CLASSIFIER
    if not path.exists():
        raise CheckpointError(f"classifier file not found: {path}. Use the shipped {DEFAULT_CLASSIFIER.name} "
                              "or train one (python -m m3unet train-classifier).")
    meta = read_metadata(path)
    if "m3unet_classifier_config" not in meta:
        raise CheckpointError(f"{path.name} is not a DegradationClassifier checkpoint (no classifier config "
                              f"in its metadata); choose a classifier file such as {DEFAULT_CLASSIFIER.name}.")
    if json.loads(meta.get("labels", "[]")) != list(LABELS):
        raise CheckpointError(f"{path.name} was trained for labels {meta.get('labels')}, not {list(LABELS)}")
    model = DegradationClassifier(ClassifierConfig.from_dict(json.loads(meta["m3unet_classifier_config"])))
    try:
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as e:
        raise CheckpointError(f"{path.name} does not match its classifier config: {str(e)[:300]}") from e
    model.metadata = meta  # type: ignore[attr-defined]
    return model.eval()
