"""The degradations M3UNet knows: their kinds, the labels the classifier reports, and severity.

A :class:`Degradation` is a kind (noise, blur, motion, low resolution, haze, low light, JPEG),
a severity in [0, 1] and the physical parameters that produce it (paper eq. 1, ``B = K * I + N``,
extended with down-sampling, JPEG, low light and haze). The synthesis that applies them lives in
:mod:`m3unet.training.synthesis`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("noise", "poisson", "blur", "motion", "lowres", "haze", "lowlight", "jpeg")
# The label a kind is reported under by the classifier (Poisson noise is "noise").
LABEL = {"noise": "noise", "poisson": "noise", "blur": "blur", "motion": "motion",
         "lowres": "lowres", "haze": "haze", "lowlight": "lowlight", "jpeg": "jpeg"}
# The classifier's labels, in the order of its outputs (also the plan's tasks).
LABELS = ("noise", "blur", "motion", "jpeg", "lowres", "lowlight", "haze")
ORDER = {k: i for i, k in enumerate(("blur", "motion", "lowres", "haze", "lowlight", "noise", "poisson", "jpeg"))}
LEVELS = ("light", "moderate", "heavy")


def level(severity: float) -> str:
    """Three-level name of a severity in [0, 1]."""
    return LEVELS[min(2, int(severity * 3))]


@dataclass
class Degradation:
    """One degradation: its kind, severity in [0, 1] and physical parameters."""
    kind: str
    severity: float
    params: dict = field(default_factory=dict)

    @property
    def level(self) -> str:
        return level(self.severity)
