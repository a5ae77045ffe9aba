"""DegradationClassifier: which degradations an image has, and how severe each is.

A small CNN looks at several native-resolution crops (pixel-level evidence: noise, JPEG blocks,
blur kernels) and at a down-scaled view of the whole image (global evidence: haze, low light),
and predicts, for each label in :data:`LABELS`, a probability (multi-label) and a severity in
[0, 1]. Crop predictions are averaged. Trained on the synthetic degradations of
:mod:`m3unet.degradation` (:func:`m3unet.classifier_training.train_classifier`; no command line
or node yet, see issue 3); in the spirit of the
degradation-aware prompts of SeeSR and DA-CLIP's degradation embedding, but small and fast.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .degradation import LABEL, Degradation, level

LABELS = ("noise", "blur", "motion", "jpeg", "lowres", "lowlight", "haze")


@dataclass
class ClassifierConfig:
    widths: list[int] = field(default_factory=lambda: [24, 48, 96, 128])
    crop: int = 96
    crops: int = 8
    global_size: int = 128

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GELU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GELU())


class DegradationClassifier(nn.Module):
    """Local (crop) and global (whole image) CNN branches -> per-label logits and severities."""

    def __init__(self, config: ClassifierConfig | None = None):
        super().__init__()
        cfg = self.config = config or ClassifierConfig()
        w = cfg.widths
        # The local branch starts at full resolution (no stride) so that pixel statistics survive.
        self.local_stem = nn.Sequential(nn.Conv2d(3, w[0], 3, padding=1), nn.GELU())
        self.local = nn.Sequential(*[_stage(a, b) for a, b in zip([w[0]] + w[:-1], w)])
        self.glob = nn.Sequential(nn.Conv2d(3, w[0], 3, padding=1), nn.GELU(),
                                  *[_stage(a, b) for a, b in zip([w[0]] + w[:-1], w)])
        feat = 2 * w[-1] + 2 * w[-1] + 6  # local mean+max, global mean+max, colour statistics
        self.head = nn.Sequential(nn.Linear(feat, 256), nn.GELU(), nn.Linear(256, 2 * len(LABELS)))

    @staticmethod
    def _pool(f: torch.Tensor) -> torch.Tensor:
        return torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)

    def forward(self, crops: torch.Tensor, whole: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``crops`` [B, K, 3, c, c] and ``whole`` [B, 3, g, g] -> logits [B, L], severity [B, L]."""
        b, k = crops.shape[:2]
        loc = self._pool(self.local(self.local_stem(crops.flatten(0, 1) * 2 - 1)))
        loc = torch.cat([loc.view(b, k, -1).mean(1)[:, : loc.shape[1] // 2],
                         loc.view(b, k, -1).amax(1)[:, loc.shape[1] // 2:]], 1)
        glb = self._pool(self.glob(whole * 2 - 1))
        stats = torch.cat([whole.mean((2, 3)), whole.std((2, 3))], 1)
        out = self.head(torch.cat([loc, glb, stats], 1))
        logits, sev = out.chunk(2, dim=1)
        return logits, torch.sigmoid(sev)


def views(image: torch.Tensor, config: ClassifierConfig, gen: torch.Generator | None = None
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops ``[K, 3, c, c]`` (a regular grid, or random with ``gen``) and the whole view of ``[3, H, W]``."""
    _, h, w = image.shape
    c = config.crop
    if min(h, w) < c:
        image = F.interpolate(image[None], size=(max(h, c), max(w, c)), mode="nearest")[0]
        _, h, w = image.shape
    k = config.crops
    if gen is None:
        side = int(k ** 0.5 + 0.999)
        ys = torch.linspace(0, h - c, side).round().long().tolist()
        xs = torch.linspace(0, w - c, side).round().long().tolist()
        pos = [(y, x) for y in ys for x in xs][:k]
        while len(pos) < k:
            pos.append(pos[len(pos) % max(1, len(pos))])
    else:
        pos = [(int(torch.randint(0, h - c + 1, (), generator=gen)), int(torch.randint(0, w - c + 1, (), generator=gen)))
               for _ in range(k)]
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
    """The classifier's reading of one image."""
    probabilities: dict[str, float]
    severity: dict[str, float]
    threshold: float = 0.5

    @property
    def labels(self) -> list[str]:
        """Detected labels, most severe first."""
        found = [k for k, p in self.probabilities.items() if p >= self.threshold]
        return sorted(found, key=lambda k: -self.severity[k])

    def report(self) -> str:
        if not self.labels:
            return "no degradation detected"
        return "; ".join(f"{k}: {level(self.severity[k])} (p={self.probabilities[k]:.2f}, "
                         f"severity {self.severity[k]:.2f})" for k in self.labels)

    def restoration_text(self) -> str:
        """Canonical restoration text M3UNet was trained on, most severe first (labels are kinds)."""
        from .text import describe
        return describe([Degradation(k, self.severity[k]) for k in self.labels])


class Classifier:
    """Inference wrapper: IMAGE batches in, :class:`Finding` per image out."""

    def __init__(self, model: DegradationClassifier, threshold: float = 0.5):
        self.model = model.eval()
        self.threshold = threshold

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> list[Finding]:
        """Classify an IMAGE batch ``[B, H, W, C]`` (float 0-1 or uint8; grey/RGB/RGBA)."""
        from .pipeline import _to_rgb_float, check_image
        image = check_image(image)
        out = []
        for x in image:
            crops, whole = views(_to_rgb_float(x), self.model.config)
            logits, sev = self.model(crops[None], whole[None])
            p = torch.sigmoid(logits[0])
            out.append(Finding({k: round(float(v), 4) for k, v in zip(LABELS, p)},
                               {k: round(float(v), 4) for k, v in zip(LABELS, sev[0])}, self.threshold))
        return out


def save_classifier(model: DegradationClassifier, path, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file
    meta = {"m3unet_classifier_config": model.config.to_json(), "labels": json.dumps(LABELS)}
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)


def load_classifier(path=None) -> DegradationClassifier:
    """Load classifier weights (safetensors; default: the shipped ``weights/classifier-default.safetensors``)."""
    from pathlib import Path

    from safetensors.torch import load_file

    from .weights import REPO, CheckpointError, read_metadata
    path = Path(path) if path else REPO / "weights" / "classifier-default.safetensors"
    meta = read_metadata(path)
    if "m3unet_classifier_config" not in meta:
        raise CheckpointError(f"{path.name} is not a DegradationClassifier checkpoint (no classifier config)")
    model = DegradationClassifier(ClassifierConfig(**json.loads(meta["m3unet_classifier_config"])))
    try:
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as e:
        raise CheckpointError(f"{path.name} does not match its classifier config: {str(e)[:300]}") from e
    model.metadata = meta  # type: ignore[attr-defined]
    return model.eval()
