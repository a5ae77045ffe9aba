"""The automatic restore's guards: small named tests, each deciding whether one rule applies.

Every number they use comes from the restore policy (:class:`m3unet.auto.policy.RestorePolicy`),
which says what each protects against and where its value came from.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..core.image import luminance
from .policy import DEFAULT_POLICY, RestorePolicy
from .scoring import Effect


def _sample(v: torch.Tensor) -> torch.Tensor:
    """``v`` as a flat float vector, strided down to at most 2^20 values (quantile() refuses very
    large inputs; a stride keeps the histogram)."""
    v = v.flatten().float()
    return v[:: v.numel() // (1 << 20) + 1] if v.numel() > 1 << 20 else v


def _luminance_sample(x: torch.Tensor) -> torch.Tensor:
    """The luminance of ``[3, H, W]`` as a flat float vector of at most 2^20 values (:func:`_sample`)."""
    return _sample(luminance(x))


def looks_like_print(x: torch.Tensor, policy: RestorePolicy = DEFAULT_POLICY) -> bool:
    """Does ``[3, H, W]`` (float 0-1) look like print: mostly paper of one tone, with dark ink on it?

    A cheap histogram test (not a text detector; a flat bright photo with dark details can pass
    it): at least ``paper_share`` of the pixels within ``paper_band`` of the paper tone (the 90th
    luminance percentile), and the ink (2nd percentile) at least ``ink_contrast`` darker."""
    lum = _luminance_sample(x)
    paper, ink = torch.quantile(lum, 0.9), torch.quantile(lum, 0.02)
    share = float((lum > paper - policy.paper_band).float().mean())
    return share >= policy.paper_share and float(paper - ink) >= policy.ink_contrast


def unread_on_print(x: torch.Tensor, policy: RestorePolicy = DEFAULT_POLICY,
                    print_like: bool | None = None) -> tuple[str, ...]:
    """Print guard: the classifier readings to ignore on ``x`` (those it misreads on paper), or ().
    ``print_like``: :func:`looks_like_print` of ``x`` if already known."""
    if not policy.print_guard:
        return ()
    return tuple(policy.print_unread) if (looks_like_print(x, policy) if print_like is None else print_like) else ()


def faint_readings(finding, policy: RestorePolicy = DEFAULT_POLICY) -> tuple[str, ...]:
    """Low-light floor: ``("lowlight",)`` when the reading finds low light under the policy's
    ``lowlight_min_severity`` (a dark scene reads as faint low light), else ()."""
    if finding is None or "lowlight" not in finding.labels:
        return ()
    return ("lowlight",) if finding.severity.get("lowlight", 1.0) < policy.lowlight_min_severity else ()


def brightening_share(finding, policy: RestorePolicy = DEFAULT_POLICY) -> float:
    """Low-light ramp: the share (0-1) of a brightening step's change to keep, from the low-light
    severity read on the image as given: 0 at ``lowlight_min_severity``, rising linearly to 1 over
    ``lowlight_ramp`` (1 when the ramp is off or no low light is read)."""
    if finding is None or policy.lowlight_ramp <= 0 or "lowlight" not in finding.labels:
        return 1.0
    s = finding.severity.get("lowlight", 1.0)
    return float(min(max((s - policy.lowlight_min_severity) / policy.lowlight_ramp, 0.0), 1.0))


def highlight(x: torch.Tensor) -> float:
    """Luminance of ``[3, H, W]`` (0-1) at the 99.5th percentile: how close its brightest parts come to
    white. An under-exposed photo leaves the top of the range empty; a dark scene exposed as it should
    be keeps brighter highlights (lamps, windows, a lit face)."""
    return float(torch.quantile(_luminance_sample(x[..., :3, :, :]), 0.995))


def lit_highlight(finding, x: torch.Tensor, policy: RestorePolicy = DEFAULT_POLICY) -> float | None:
    """Highlight limit: the image's :func:`highlight` when the reading finds low light and that is at
    least the policy's ``lowlight_max_highlight`` (its brightest parts are brighter than the
    under-exposure the brightening step undoes leaves them, so it is a dark scene, not an under-exposed
    one), else None."""
    if finding is None or "lowlight" not in finding.labels or policy.lowlight_max_highlight > 1:
        return None
    h = highlight(x)
    return h if h >= policy.lowlight_max_highlight else None


def lit_readings(finding, x: torch.Tensor, policy: RestorePolicy = DEFAULT_POLICY) -> tuple[str, ...]:
    """Highlight limit: ``("lowlight",)`` when :func:`lit_highlight` holds, else ()."""
    return ("lowlight",) if lit_highlight(finding, x, policy) is not None else ()


def black_point(x: torch.Tensor) -> float:
    """The black point of ``[3, H, W]`` (0-1): the 1st percentile of min(R, G, B) after a 5x5 box mean
    (the mean keeps single noisy pixels from deciding). Haze adds airlight A(1 - t) to every pixel, so a
    hazy image has no deep blacks (the dark channel prior, He, Sun and Tang, CVPR 2009)."""
    dark = x[..., :3, :, :].amin(-3).float().reshape(1, 1, *x.shape[-2:])
    smooth = torch.nn.functional.avg_pool2d(dark, 5, 1, 2, count_include_pad=False)
    return float(torch.quantile(_sample(smooth), 0.01))


def deep_black_point(finding, x: torch.Tensor, policy: RestorePolicy = DEFAULT_POLICY) -> float | None:
    """Black-point limit: the image's :func:`black_point` when the reading finds haze and that is
    under the policy's ``haze_min_black_point`` (it keeps blacks deeper than the lightest haze the
    dehazing step removes would leave: a clear, low-contrast scene, not a hazy one), else None."""
    if finding is None or "haze" not in finding.labels or policy.haze_min_black_point <= 0:
        return None
    b = black_point(x)
    return b if b < policy.haze_min_black_point else None


def deep_black_readings(finding, x: torch.Tensor, policy: RestorePolicy = DEFAULT_POLICY) -> tuple[str, ...]:
    """Black-point limit: ``("haze",)`` when :func:`deep_black_point` holds, else ()."""
    return ("haze",) if deep_black_point(finding, x, policy) is not None else ()


def unread_later(finding, policy: RestorePolicy = DEFAULT_POLICY) -> tuple[str, ...]:
    """Readings taken as given: the labels ignored for the rest of the run because the image as given
    does not read them and the policy takes them from the image as given only (``lowlight_as_given``,
    ``haze_as_given``): exposure and haze are properties of the scene, which other steps do not add."""
    if finding is None:
        return ()
    asked = (("lowlight",) if policy.lowlight_as_given else ()) + (("haze",) if policy.haze_as_given else ())
    return tuple(k for k in asked if k not in finding.labels)


def clipped_share(x: torch.Tensor, level: float = DEFAULT_POLICY.clip_level) -> float:
    """Share of the pixels of ``x`` (channels at dim -3, 0-1) with a channel at ``level`` or more."""
    return float((x[..., :3, :, :].amax(-3) >= level).float().mean())


def overexposure(before: torch.Tensor, after: torch.Tensor, tasks: Sequence[str],
                 policy: RestorePolicy = DEFAULT_POLICY) -> float | None:
    """Exposure guard: the extra share of saturated pixels if a brightening step (``lowlight`` in
    ``tasks``) pushed more than ``exposure_clip_rise`` of the pixels into saturation, else None."""
    if not policy.exposure_guard or "lowlight" not in tasks:
        return None
    rise = clipped_share(after, policy.clip_level) - clipped_share(before, policy.clip_level)
    return rise if rise > policy.exposure_clip_rise else None


def accept(e: Effect, planned_by_user: bool, policy: RestorePolicy = DEFAULT_POLICY) -> bool:
    """Keep a step? Planned automatically: it must lower its own degradation by ``min_gain`` and gain
    more than its side effects cost. Given by the user: it is only undone if it does harm (its
    benefit is below ``-min_gain``).

    Not the total score: the classifier reads M3UNet's dehazed or brightened outputs as slightly
    soft, so a total-score rule rolls back good steps and keeps steps for degradations the image
    does not have."""
    if planned_by_user:
        return e.benefit > -policy.min_gain
    return e.own_drop >= policy.min_gain and e.benefit > 0


def preferred(benefits: Sequence[float], policy: RestorePolicy = DEFAULT_POLICY) -> int:
    """Index of the candidate to keep: the first within ``prefer_margin`` of the best benefit (the
    candidates come tagged models first, M3UNet last; smaller differences are jitter)."""
    best = max(benefits)
    return next(i for i, b in enumerate(benefits) if b >= best - policy.prefer_margin)


def pending(finding, first_labels: Sequence[str], tried: set[str], policy: RestorePolicy = DEFAULT_POLICY
            ) -> list[str]:
    """Hysteresis: what is left to restore. The detected labels, plus those found at the start that
    no step has addressed yet and whose probability is still at least ``keep_threshold``."""
    held = [t for t in first_labels if t not in tried and t not in finding.labels
            and finding.probabilities.get(t, 0.0) >= policy.keep_threshold]
    return list(finding.labels) + held


def reads_blur_like(finding, policy: RestorePolicy = DEFAULT_POLICY) -> bool:
    """Defocus gate, classifier half: the reading shows a blur-like label (None: no reading to ask)."""
    return finding is None or any(k in finding.labels for k in policy.defocus_labels)


def reads_resampled(finding) -> bool:
    """The reading shows low resolution without blur: a photo down-sampled and brought back to size,
    whose blur the Gaussian deconvolution should undo only in part (policy ``resampled_sigma_scale``)."""
    return finding is not None and "lowres" in finding.labels and "blur" not in finding.labels


def estimator_reads_defocus(est, would_deconvolve: bool, policy: RestorePolicy = DEFAULT_POLICY) -> bool:
    """Defocus gate, estimator half: a Gaussian blur of at least ``defocus_sigma`` px that the
    deconvolution can take (``would_deconvolve``: not too noisy, no JPEG blocks)."""
    return est.sigma >= policy.defocus_sigma and would_deconvolve


def cepstrum_reads_motion(est, policy: RestorePolicy = DEFAULT_POLICY) -> bool:
    """Motion gate, estimator half: a cepstral motion kernel (:class:`m3unet.auto.motion.MotionEstimate`)
    at least ``motion_min_length`` px long, ``motion_confidence`` deep and directional (its
    perpendicular offset under ``motion_max_symmetry`` of the peak)."""
    return (est.length >= policy.motion_min_length and est.confidence >= policy.motion_confidence
            and est.symmetry < policy.motion_max_symmetry)


def fitted_path_reads_motion(est, policy: RestorePolicy = DEFAULT_POLICY) -> bool:
    """Motion gate for a shake the cepstrum reads shallow (long or curved): at least
    ``motion_fit_confidence`` deep, ``motion_min_length`` long, directional, and a fitted path
    (:func:`m3unet.auto.motion.fit_path`) that matches the photo's spectrum by ``motion_match``."""
    return (policy.motion_fit_path and est.length >= policy.motion_min_length
            and est.confidence >= policy.motion_fit_confidence and est.symmetry < policy.motion_max_symmetry
            and est.match >= policy.motion_match)


def is_too_small(x: torch.Tensor, min_side: int) -> bool:
    """Under the classifier's minimum side (from its weights) its reading is not trusted."""
    return min(x.shape[-2:]) < min_side


def reads_as_enlarged_print(x: torch.Tensor, est, blocky_from: float, min_sigma: float,
                            policy: RestorePolicy = DEFAULT_POLICY) -> bool:
    """Small-image route to the small-print specialist: soft (``min_sigma`` px or more), with the
    ringing of bicubic enlargement (blockiness from ``blocky_from`` up to ``enlarged_blocky``; JPEG
    blocks read higher), no noise, and the image looks like print."""
    return (est.sigma >= min_sigma and blocky_from <= est.blocky < policy.enlarged_blocky
            and est.noise < policy.small_noise and looks_like_print(x, policy))


def reads_as_noisy(est, policy: RestorePolicy = DEFAULT_POLICY) -> bool:
    """Small-image route: the blind pass takes a noise step's sampler steps when the blur estimator
    reads at least ``small_noise`` (1/255)."""
    return est is not None and est.noise >= policy.small_noise
