"""The reading the pack reports: the classifier's findings, with motion blur also read from the spectrum.

The classifier's CNN misses some motion blurs that the image's cepstrum shows plainly (low-contrast
and dark scenes above all). Where the policy says so (``spectral_motion_reading``), motion counts as
read when the classifier reads it *or* the motion gate's spectral test holds on the image
(:meth:`m3unet.auto.motion.MotionDeblur.gate_reading`: a deep cepstral peak, or a shallower one whose
fitted camera path matches the photo's power spectrum; Cannon 1976, Krishnan et al. 2011); the
finding then says what the spectrum showed (:attr:`m3unet.auto.classifier.Finding.spectral`) and
its motion severity is at least the read length's on the classifier's scale (5-25 px). Images
under the classifier's minimum side and images that look like print
(:func:`m3unet.auto.guards.looks_like_print`) are read by the classifier alone.

Where the policy says so (``scene_limits_reading``), the reading also leaves out what the image's
tones rule out, as the automatic restore does (:func:`m3unet.auto.guards.lit_highlight`,
:func:`m3unet.auto.guards.deep_black_point`): low light on an image whose highlights are brighter
than an under-exposed photo's (a dark scene), and haze on an image that keeps deep blacks (haze lifts
the black point: He et al. 2009); the finding keeps them in :attr:`Finding.scene`, with why.

This is what the Degradation Classifier node, ``python -m m3unet classify`` and MLLM Caption report,
and what the stress set's F1 scores. The automatic restore acts on the classifier's own reading at
its policy's decision points (:attr:`m3unet.auto.policy.RestorePolicy.act_offsets`); its motion gate
runs the same spectral test itself.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import torch

from ..core.image import check_image, to_rgb_float
from . import guards
from .classifier import Classifier, Finding
from .motion import MotionDeblur, MotionEstimate, motion_severity
from .policy import DEFAULT_POLICY, RestorePolicy


def scene_limited(finding: Finding, x: torch.Tensor, policy: RestorePolicy = DEFAULT_POLICY) -> Finding:
    """``finding`` on ``[3, H, W]`` with the readings the restore's scene limits leave alone moved to
    :attr:`Finding.scene`, with why: low light where the highlights reach the policy's
    ``lowlight_max_highlight``, haze where the black point is under ``haze_min_black_point``."""
    scene = dict(finding.scene)
    if (h := guards.lit_highlight(finding, x, policy)) is not None:
        scene["lowlight"] = f"its highlights reach {h:.2f}, brighter than an under-exposed photo's: a dark scene"
    if (b := guards.deep_black_point(finding, x, policy)) is not None:
        scene["haze"] = f"its black point is {b:.2f}: deep blacks, which haze would have lifted"
    return dataclasses.replace(finding, scene=scene) if scene != finding.scene else finding


class Reader:
    """IMAGE batch ``[B, H, W, C]`` -> one :class:`Finding` per image: the classifier's reading, with
    motion also read from the spectrum where the policy asks for it."""

    def __init__(self, classifier: Classifier, policy: RestorePolicy | None = None, spectral_motion: bool | None = None,
                 scene_limits: bool | None = None):
        self.classifier = classifier
        self.policy = policy or DEFAULT_POLICY
        self.spectral_motion = self.policy.spectral_motion_reading if spectral_motion is None else spectral_motion
        self.scene_limits = self.policy.scene_limits_reading if scene_limits is None else scene_limits
        self._gate = MotionDeblur(None, base_balance=self.policy.motion_balance, policy=self.policy)

    @property
    def min_side(self) -> int:
        return self.classifier.min_side

    def spectral_motion_of(self, x: torch.Tensor, finding: Finding) -> MotionEstimate | None:
        """The motion the spectrum shows on ``[3, H, W]`` when the classifier does not read it and the
        spectral test may be asked (not under the minimum side, not on print), else None."""
        if not self.spectral_motion or "motion" in finding.labels:
            return None
        if guards.is_too_small(x, self.min_side) or guards.looks_like_print(x, self.policy):
            return None
        return self._gate.gate_reading(x, self.policy)

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, offsets: Mapping[str, float] | None = None) -> list[Finding]:
        """Read an IMAGE batch (``offsets``: as :meth:`Classifier.__call__`)."""
        image = check_image(image)
        return self.complete(image, self.classifier(image, offsets=offsets))

    @torch.no_grad()
    def complete(self, image: torch.Tensor, findings: list[Finding]) -> list[Finding]:
        """The classifier's ``findings`` on an IMAGE batch as the pack reports them: with the motion the
        spectrum shows (:meth:`with_spectrum`) and without what the image's tones rule out (:meth:`with_scene`)."""
        return self.with_scene(image, self.with_spectrum(image, findings))

    @torch.no_grad()
    def with_scene(self, image: torch.Tensor, findings: list[Finding]) -> list[Finding]:
        """``findings`` with low light and haze moved to :attr:`Finding.scene` where the image's tones
        rule them out (the restore's scene limits); unchanged when the reader's scene limits are off."""
        if not self.scene_limits:
            return list(findings)
        image = check_image(image)
        return [scene_limited(f, to_rgb_float(img.cpu()), self.policy) for img, f in zip(image, findings)]

    @torch.no_grad()
    def with_spectrum(self, image: torch.Tensor, findings: list[Finding]) -> list[Finding]:
        """The classifier's ``findings`` on an IMAGE batch with the motion the spectrum shows added
        where the classifier misses it (:meth:`spectral_motion_of`)."""
        image = check_image(image)
        out = []
        for img, f in zip(image, findings):
            est = self.spectral_motion_of(to_rgb_float(img.cpu()), f)
            if est is not None:
                what = (f"{est.length:.1f} px at {est.angle:.0f} degrees" + (f", bowed {est.bow:+.2f}" if est.bow else "")
                        + f" (cepstral depth {est.confidence:.1f}" + (f", path match {est.match:.2f})" if est.match else ")"))
                f = dataclasses.replace(f, spectral={**f.spectral, "motion": what},
                                        severity={**f.severity, "motion": max(f.severity["motion"],
                                                                              round(motion_severity(est.length), 4))})
            out.append(f)
        return out

