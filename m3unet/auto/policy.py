"""The restore policy: every threshold and rule of the automatic restore, in one documented object.

The automatic restore (:mod:`m3unet.auto.restorer`) reads the image, plans, tries candidates and
keeps or rolls back each step. Everything it decides by a number or a switch lives here, with what
it decides and where its value came from. Values are chosen on the *validation* photos
(:data:`m3unet.training.data.VALIDATION`); published figures are measured on the *test* photos,
which chose nothing. ``python -m m3unet policy`` prints this table; ``--policy KEY=VALUE`` on
``restore`` and ``eval`` changes one entry (how each rule was re-checked on validation).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..core.degradations import LABELS


def _entry(default: Any, decides: str, origin: str) -> Any:
    kw = {"default_factory": (lambda d=default: d)} if isinstance(default, (dict, list)) else {"default": default}
    return field(metadata={"decides": decides, "origin": origin}, **kw)


class PolicyError(ValueError):
    """A policy entry that does not exist or a value of the wrong type; the message names it."""


# entries whose items come from a fixed vocabulary
CHOICES = {"small_print_routes": ("deblur", "enlarged_print", "blind"), "leave_alone": tuple(LABELS)}


@dataclass(frozen=True)
class RestorePolicy:
    """The automatic restore's thresholds and rules (defaults: the shipped policy)."""

    # --- the user's choice ------------------------------------------------------------------------
    leave_alone: tuple[str, ...] = _entry(
        (), "degradations the automatic restore never acts on, whatever it reads (an automatic plan only; a "
        "given plan runs as written): e.g. lowlight, haze keeps the mood of a dark, low-key or misty photo, "
        "which the classifier can read as under-exposed or hazy",
        "a choice, not a measurement: empty as shipped. Why one may want it: on the holdout photos' stress "
        "set (docs/stress.md) dark crops of dark scenes were brightened and grey indoor scenes dehazed")
    # --- reading ---------------------------------------------------------------------------------
    detection_threshold: float = _entry(
        0.5, "probability from which the classifier's reading counts a degradation as present",
        "the classifier's calibration point (its heads are fit with a 0.5 decision threshold)")
    act_offsets: dict = _entry(
        {"noise": 0.0, "jpeg": 0.0, "blur": 0.0, "lowres": 0.0},
        "per-label decision offsets (logits) at which the restore acts, in place of the classifier file's "
        "calibration for the labels named: the file's offsets are chosen for the best reading (F1), these for "
        "the restore (judged by the restored images)",
        "eval --stress --split validation, centre and darkest crops (414 cases), with a copy of the classifier "
        "file carrying the stress set's best reading offsets (noise +2.3, JPEG +1.4, soft +0.5; "
        "results/classifier-calibration-validation.json): acting at 0 against acting at the reading's offsets "
        "(--policy 'act_offsets={}', results/stress-validation*-act-at-reading.json): mean gain +4.597 vs +4.587 dB, "
        "level (at the reading's offsets a light noise and a motion blur on dark crops were left, -3.2 and -3.1 dB, "
        "and three JPEGs lost a needless noise pass, +0.3 to +0.7), so the restore acts where it did before the "
        "reading was calibrated (the shipped file keeps the JPEG offset only: docs/classifier.md#calibration)")
    spectral_motion_reading: bool = _entry(
        True, "the reading the pack reports (Degradation Classifier node, classify, MLLM Caption) counts motion "
        "blur where the classifier reads it or the motion gate's spectral test holds (never under the "
        "classifier's minimum side or on print); the automatic restore acts on the classifier's own reading",
        "scripts/motion_reading_probe.py --region centre|dark on the validation stress set: motion F1 centre crops "
        "0.891 -> 0.883 (one JPEG of opencv-fruits read as motion), darkest crops 0.869 -> 0.923 (five motion blurs "
        "the classifier read as nothing), both together 0.880 -> 0.902; the same with print excluded; no other "
        "family changes")
    scene_limits_reading: bool = _entry(
        True, "the reading the pack reports leaves out what the restore's scene limits rule out (low light on an "
        "image whose highlights reach lowlight_max_highlight, haze on one whose black point is under "
        "haze_min_black_point) and says why, so the reading and the restore agree",
        "scripts/scene_reading_probe.py (eval --stress --split validation and --split holdout, centre and darkest "
        "crops, no restore run; results/scene-reading-validation-holdout.json): F1 over both splits' 1058 cases, "
        "low light 0.891 -> 0.924, haze 0.743 -> 0.762; clean read with no label on the holdout's darkest crops "
        "0.786 -> 0.857; on validation alone each loses one case on the darkest crops (low light 1.00 -> 0.985, "
        "haze 0.967 -> 0.949), the centre crops unchanged")
    keep_threshold: float = _entry(
        0.25, "hysteresis: a degradation found at the start stays on the to-do list while its probability "
        "is at least this and no step for it has run",
        "eval --rules on the validation suite: fired on 3 of 288 cases (mixes), +1.57 dB there: one step's "
        "output can push another degradation just under the detection threshold")
    lowlight_min_severity: float = _entry(
        0.2, "a low-light reading of the image as given is acted on only from this severity on; fainter ones "
        "are left alone (a dark scene and a slightly under-exposed photo read alike, and brightening a dark "
        "scene ruins it)",
        "scripts/lowlight_floor.py on eval --stress --split validation, centre and darkest crops (414 cases, "
        "results/lowlight-floor-validation.json): mean gain +2.36 dB with no floor, +3.97 at 0.2 (the best of "
        "0-0.5); the low-light cases keep their +7.53 dB up to 0.4. Re-checked with the stage-7 classifier "
        "(results/lowlight-floor-validation-stage7.json): +3.44 dB with no floor, +4.28 at 0.2, still the best; "
        "and with the calibrated classifier and haze taken as given (results/lowlight-floor-validation-calibrated.json): "
        "+4.31 dB with no floor, +4.34 at 0.2, +4.33 at 0.25 and 0.3: still the best, and the calibration now "
        "keeps most faint readings from counting at all. Re-checked on the validation and holdout photos "
        "(scripts/scene_limit_probe.py lowlight_min_severity, centre and darkest crops, 1058 cases, "
        "results/lowlight-floor-validation-holdout.json): floors up to 0.22 change no validation result, from "
        "0.23 they cost validation low-light cases; over both splits -5.4 dB at 0.21, +11.7 at 0.22, +1.3 at "
        "0.25, +105 at 0.3, +168 at 0.35, the gains above 0.25 nearly all from one photo's darkest crop (a dark "
        "scene, lomiri16-seeding) and each step up costing real low light, so the floor stays at 0.2")
    lowlight_ramp: float = _entry(
        0.0, "a low-light reading of the image as given between lowlight_min_severity and that plus this width "
        "is brightened only in part (the brightening step's change scaled from 0 at the floor to 1 at the top), "
        "so a reading just over the floor no longer brightens in full while one just under it does nothing; 0: off",
        "scripts/lowlight_ramp_probe.py on eval --stress --split validation, centre and darkest crops "
        "(414 cases, results/lowlight-ramp-validation.json): mean gain +4.309 dB off, +4.296 at 0.1, +4.295 at 0.2; "
        "the validation low-light cases read from severity 0.26 on the darkest crops and lose their brightening, "
        "so it is off")
    lowlight_max_highlight: float = _entry(
        0.55, "a low-light reading of the image as given is left alone when the image's luminance at the "
        "99.5th percentile is at least this (its highlights reach higher than the brightest under-exposure the "
        "brightening step was trained to undo leaves them: a dark scene, not an under-exposed photo); over 1: off",
        "scripts/scene_limit_probe.py lowlight_max_highlight on eval --stress --split validation and --split "
        "holdout, centre and darkest crops (1058 cases, results/lowlight-highlight-validation-holdout.json): every "
        "limit from 0.9 down to 0.35 costs no low-light case (the two it acts on are three-way mixes with haze "
        "after the darkening, which brightening harmed: -6.5 -> +1.1 and -7.1 -> +2.0 dB); 0.55 acts on four cases "
        "(+47.8 dB together, mean gain +0.12 dB on the holdout's darkest crops). 0.55 is the brightest highlight "
        "of the brightening step's training (gain 0.55, gamma 1.0, white kept at 0.55): lower limits gain more on "
        "the holdout (0.35: +165.7 dB) but only on the darkest crops of two dark photos, and would leave photos "
        "under-exposed within the trained range alone. Earlier, on validation alone "
        "(scripts/highlight_probe.py, results/lowlight-highlight-validation.json): the validation low-light cases' "
        "highlights reach at most 0.21, and every limit from 0.55 to 0.95 left the 414 results as they were")
    lowlight_as_given: bool = _entry(
        True, "brighten only when the image as given reads low light (at least lowlight_min_severity); a "
        "low-light reading that appears after another step (deblurring, denoising) is ignored: exposure is a "
        "property of the photo, which those steps do not change",
        "eval --stress --split validation with the floor at 0.2, centre and darkest crops (414 cases): mean gain "
        "+3.97 dB off, +4.30 on; 12 cases changed, one centre three-way mix lost (mixes there +4.03 -> +3.55), "
        "dark crops gained (haze, motion, down-sampling, mixes; results/lowlight-as-given-validation.json)")
    haze_as_given: bool = _entry(
        True, "dehaze only when the image as given reads haze; a haze reading that appears after another step "
        "(the classifier reads a brightened photo as slightly hazy) is ignored: haze is a property of the scene, "
        "which other steps do not add",
        "eval --stress --split validation --classifier <calibrated file>, centre and darkest crops (414 cases, "
        "docs/classifier.md#calibration): mean gain +4.286 dB off, +4.340 on; off, three brightened low-light "
        "photos and mixes read as hazy after brightening and were dehazed (-4.0 to -6.6 dB each)")
    haze_min_black_point: float = _entry(
        0.15, "a haze reading of the image as given is left alone when the image's black point (1st percentile "
        "of min(R, G, B) after a 5x5 box mean) is under this: haze adds airlight A(1 - t) to every pixel, so the "
        "image keeps blacks deeper than the lightest haze the dehazing step removes would leave (He et al. 2009, "
        "the dark channel prior); 0: off",
        "scripts/scene_limit_probe.py haze_min_black_point on eval --stress --split validation and --split holdout, "
        "centre and darkest crops (1058 cases, results/haze-black-point-validation-holdout.json): the largest limit "
        "tried that changes no validation result (0.2 costs a three-way mix with haze on a dark crop -5.7 dB, 0.25 and "
        "0.3 more real haze); on the holdout it acts on 15 cases, 13 of them clear grey scenes read as hazy "
        "(+227 dB together, one real haze case +10.1, one -7.1): mean gain +0.14 dB on the centre crops, +0.58 on "
        "the darkest. The lightest haze the stress set and the dehazing step's training add leaves a black point "
        "of about 0.19 (airlight 0.75, transmission 0.74)")
    # --- judging a step ----------------------------------------------------------------------------
    min_gain: float = _entry(
        0.05, "a step must lower its own degradation's score by at least this to be kept; smaller "
        "changes are classifier jitter",
        "validation mixes: removing a detected degradation lowers its score by about 0.5 or more")
    side_weight: float = _entry(
        0.0, "weight of side effects (other degradations rising) against a step's gain",
        "eval --auto-rules on validation mixes (weights 0, 0.25, 0.5, 1): 0 keeps the most dB for the "
        "same harm, the classifier reads dehazed or brightened outputs as slightly soft")
    prefer_margin: float = _entry(
        0.0, "the first candidate (a model tagged with the step's task) is kept unless another lowers the "
        "degradation by more than this; 0: the best candidate wins",
        "eval --rules on the validation suite: a margin of 0.05 never changed a choice (0 of 288 cases), "
        "so it was dropped")
    retry: bool = _entry(
        False, "when an automatic plan rolled back a step after keeping others, retry once with the "
        "rolled-back degradations first and keep the run that removed more",
        "eval --rules on the validation suite: it changed 1 of 288 cases and lost 0.85 dB there, so it is "
        "off")
    # --- guards ------------------------------------------------------------------------------------
    exposure_guard: bool = _entry(
        False, "roll back a brightening (low light) step that clips many more pixels: the photo was not dark",
        "eval --rules on the validation suite: it never fired (0 of 288 cases), so it is off; "
        "scripts/exposure_probe.py shows the harm it would stop if the classifier misread a normally exposed "
        "photo as dark")
    exposure_clip_rise: float = _entry(
        0.05, "share of pixels pushed into saturation (a channel at clip_level or more) beyond which a "
        "brightening step is rolled back", "scripts/exposure_probe.py (validation photos), between 0 and 12 %")
    clip_level: float = _entry(0.98, "a channel value from which a pixel counts as saturated",
                               "just under white, so 8-bit rounding does not count")
    print_guard: bool = _entry(
        True, "on an image that looks like print (mostly paper of one tone with dark ink), do not act on "
        "the classifier's readings in print_unread: it reads paper as haze, and M3UNet's low-resolution pass "
        "blurs letters",
        "eval --rules on the validation suite: it fired on 23 of 288 cases, all rendered text pages, and "
        "gains there (docs/rules.md)")
    print_unread: tuple[str, ...] = _entry(
        ("haze", "lowlight", "lowres"), "the readings the print guard ignores",
        "haze and low light: the photo-trained classifier's misreadings on paper; low resolution: eval "
        "--ocr-pages --split validation (results/ocr-pages-validation*.json): with M3UNet's low-resolution "
        "pass four of the twelve page-size x factor cells read worse than the input (by 1.9-7.4 points of "
        "character accuracy), without it one (eight lines x4, -0.5); it gave up 0.6-0.8 points on two x2-x3 "
        "cells. PSNR on the validation suite's pages: -0.13 dB (x3 down-sampled, scripts/print_pages_probe.py)")
    paper_share: float = _entry(
        0.5, "print test: share of pixels within paper_band of the paper tone (90th luminance percentile)",
        "validation text lines: every line has at least 64 % of its pixels on the paper tone")
    paper_band: float = _entry(0.06, "print test: luminance band around the paper tone",
                               "validation text lines and photo crops")
    ink_contrast: float = _entry(
        0.3, "print test: paper tone minus the ink tone (2nd luminance percentile)",
        "validation text lines: every line has an ink contrast of at least 0.36")
    # --- the kernel-aware deblur -------------------------------------------------------------------
    defocus_gate: bool = _entry(
        True, "run the kernel-aware deblur first when the classifier reads a blur-like label and the blur "
        "estimator reads a Gaussian blur it can undo; the other blur-like steps are then not planned",
        "eval --rules on the validation suite: fired on 19 of 288 cases, +1.14 dB there (the classifier "
        "reads deconvolved images poorly, so the estimator judges that step)")
    defocus_labels: tuple[str, ...] = _entry(
        ("blur", "lowres", "motion"), "classifier labels that open the defocus gate",
        "results/label-overlap.json: defocus blur, down-sampling and motion overlap by construction")
    defocus_sigma: float = _entry(
        1.2, "the gate needs an estimated Gaussian blur of at least this many px",
        "validation photos: lower readings come from sharp photos too (a smooth subject, a soft background)")
    resampled_sigma_scale: float = _entry(
        0.8, "when the reading that opened the defocus gate is low resolution without blur (a down-sampled "
        "photo brought back to size), the deconvolution uses this times the estimated blur: a resampling "
        "kernel cuts the spectrum off where a Gaussian only rolls it off, and the full Gaussian inverse "
        "sharpens past that cut-off (ringing); 1: as estimated",
        "scripts/resampled_scale_probe.py on eval --stress --split validation, centre and darkest crops (414 "
        "cases, results/resampled-scale-validation.json): mean gain +4.276 dB at 1.0, +4.309 at 0.8 and at 0.7; "
        "down-sampling low / mid / high -0.36 / +0.19 / -0.18 dB at 1.0, +0.17 / +0.39 / +0.23 at 0.8; defocus "
        "and mixes unchanged (27 cases changed). 0.8: the tie's value nearer the estimate. On the gate's single "
        "defocus cases of the same set (scripts/deconvolution_scale_probe.py, "
        "results/deconvolution-scale-validation.json) a scale of 0.9 lost 0.4 dB and 0.8 lost 1.2, which is "
        "why the scale follows the reading and does not apply to every blur")
    # --- the motion deblur -------------------------------------------------------------------------
    motion_gate: bool = _entry(
        True, "run the motion deblur first (cepstrum kernel, Wiener deconvolution, clean-up pass) when the "
        "classifier reads one of motion_labels and the cepstrum finds a long, confident, directional motion "
        "kernel; it then takes the place of the blur-like steps",
        "scripts/motion_probe.py and eval --stress --split validation (docs/motion.md)")
    motion_needs_label: bool = _entry(
        True, "the motion gate opens only when the classifier reads one of motion_labels; off, the cepstrum's "
        "reading alone opens it (on any image that does not look like print)",
        "eval --stress --split validation, centre and darkest crops (docs/motion.md): off, the darkest crops gain "
        "(+4.24 -> +4.32 dB, missed shakes) and the centre crops lose as much (+4.32 -> +4.24, a JPEG and a light "
        "shake deconvolved); level over both, so the label stays needed. With the fitted path (motion_fit_path): "
        "centre +4.58 -> +4.50, darkest crops +4.62 -> +4.72 dB, level again")
    motion_labels: tuple[str, ...] = _entry(
        ("blur", "lowres", "motion"), "classifier labels that open the motion gate",
        "eval --stress --split validation (docs/motion.md): the classifier reads some motion blurs as defocus "
        "or down-sampling; the cepstrum tells them apart")
    motion_confidence: float = _entry(
        9.0, "the gate needs a cepstral peak at least this deep (in standard deviations of the cepstrum)",
        "scripts/motion_probe.py (validation photos, results/motion-probe-validation.json): clean, noisy, low-light "
        "and hazy photos read at most 5.0; from 9 on no other degradation opened the gate (at 8 a JPEG did), and "
        "the 40 of 54 motion cases it opened lost 2.4 dB in all against 136 dB gained (docs/motion.md)")
    motion_min_length: float = _entry(
        5.0, "the gate needs an estimated motion of at least this many px",
        "scripts/motion_probe.py (validation photos): defocus and JPEG put their cepstral peak within 4.7 px")
    motion_max_symmetry: float = _entry(
        0.3, "the gate closes when the cepstrum is this deep or more at the perpendicular offset (a share of the "
        "peak's depth): a resampled photo has the same comb along both axes, a motion blur along one",
        "scripts/motion_probe.py (validation photos): motion blurs read 0-0.14, down-sampled photos 0.46-0.99; "
        "0.3 leaves a margin on both sides")
    motion_balance: float = _entry(
        0.01, "Wiener balance of the motion deconvolution for a clean 10 px blur (in proportion to the length, "
        "more with noise); larger is smoother and safer",
        "scripts/motion_probe.py --balances 0.01,0.015,0.025 (validation photos): linear motion +3.36 / +3.29 / "
        "+3.10 dB, camera shake +1.89 / +1.91 / +1.85 dB with the clean-up pass")
    motion_fit_path: bool = _entry(
        True, "refine the cepstrum's straight kernel into the bowed camera path whose spectrum matches the photo's "
        "(length, angle, bow; the bow's sign from the sparser deconvolution) before deconvolving",
        "scripts/motion_probe.py --fit (validation photos, results/motion-fit-validation.json): with the clean-up "
        "pass linear motion +3.36 -> +3.62 dB, camera shake +1.89 -> +3.45 dB; eval --stress --split validation "
        "(docs/motion.md)")
    motion_match: float = _entry(
        0.35, "a fitted path whose spectrum correlates this well with the photo's opens the motion gate from "
        "motion_fit_confidence on (instead of motion_confidence): long and curved shakes read shallow in the cepstrum",
        "scripts/motion_probe.py --fit (validation photos): clean, noisy, JPEG, low-light and hazy photos match at "
        "most 0.19, defocus 0.27 (down-sampling up to 0.43 is shut out by motion_max_symmetry); the 7 shakes with "
        "a cepstral depth of 5-9 that match 0.35 or more gain +2.0 to +5.7 dB")
    motion_fit_confidence: float = _entry(
        5.0, "the least cepstral depth at which a well-matched fitted path (motion_match) opens the motion gate",
        "scripts/motion_probe.py (validation photos): clean, noisy, low-light and hazy photos read at most 5.0")
    # --- images under the classifier's minimum side ------------------------------------------------
    small_image_routes: bool = _entry(
        True, "under the classifier's minimum side, let the blur estimator route the image: kernel deblur, "
        "the small-print specialist, or a two-step blind pass when it reads noise",
        "eval --rules on the validation suite: fired on 62 of 288 cases (64 and 96 px crops), +0.97 dB "
        "there")
    small_print_routes: tuple[str, ...] = _entry(
        ("enlarged_print",), "the small-image routes taken on an image that looks like print (print_guard's "
        "test): deblur (the kernel-aware deblur), enlarged_print (the small-print specialist), blind (one blind "
        "M3UNet pass); when the route the image would take is not listed, it is left as it is",
        "eval --ocr-pages --split validation --per-cell 64 --page-sizes 'one small line' with every route and "
        "scripts/small_print_probe.py (192 lines in four fonts, x2-x4 down-sampled, "
        "results/small-print-routes-validation-64.json): where taken, the deblur route cost 4.3 points of "
        "character accuracy, the blind pass 0.4 (x2: -0.6 over its 64 lines), the small-print specialist gained "
        "2.1; the specialist alone gains 0.8 points over the 192 lines and no factor reads worse than its input "
        "(x2 0.0, x3 +1.7, x4 +0.9), with the blind pass too 0.7 (x2 -0.6). The first 16 pages per cell alone "
        "(results/small-print-routes-validation.json) had the blind pass gaining 1.6 points: too few lines to "
        "tell. The cost: eval --small-sides 48,64,96 (results/small-sides-specialist-only.json against "
        "results/small-sides-d465eb4.json, the specialist with the blind pass): crops of the validation photos that pass the "
        "print test keep what the left-out routes would remove; mean of the five settings 28.20 -> 28.19 dB at "
        "48 px and 28.52 -> 28.48 at 64 px against the specialist and blind pass (JPEG q15 and the mix), "
        "unchanged at 96 px")
    small_noise: float = _entry(
        6.0, "estimated noise (1/255) from which the blind pass on a small image takes a noise step's "
        "sampler steps", "validation 64/96 px crops: noisy, compressed and mixed read 7-41, clean 0-5")
    enlarged_blocky: float = _entry(
        1.5, "blockiness under which a soft small image reads as enlarged (bicubic ringing, not JPEG "
        "blocks), for the small-print specialist",
        "validation text lines x4 down-sampled read 1.17-1.34; JPEG q15 photo crops 1.3-3.2")
    # --- candidates --------------------------------------------------------------------------------
    solo_specialists: bool = _entry(
        True, "a specialist fine-tuned on one task (the shipped JPEG and noise ones) replaces M3UNet on that "
        "task's step when it is the only degradation read on a photo as given (never on print)",
        "eval --rules on the validation suite: on every image it lost 0.14 dB where it fired (32 of 288 cases: "
        "+0.56 on single degradations, -2.5 to -4.4 on clean text pages read as JPEG); kept off print, where "
        "the photo-trained classifier misreads, it gains 0.30 dB on the 22 cases where it fires")
    joint_tasks: tuple[str, ...] = _entry(
        ("noise", "blur", "motion", "jpeg", "lowres"),
        "camera and file degradations one M3UNet pass removes together in an automatic plan",
        "eval --rules on the validation suite: fired on 61 of 288 cases, +0.15 dB there (mixes +0.17)")
    task_steps: dict = _entry(
        {"noise": 2, "jpeg": 2}, "sampler steps of an M3UNet pass per task (others: 1)",
        "eval --steps 2 on validation photos: noise25 +0.50 dB, jpeg15 +0.36; blur and down-sampling lose")

    # ------------------------------------------------------------------------------------------------
    def replace(self, **changes: Any) -> "RestorePolicy":
        """A copy with ``changes`` (names checked, values converted to the entry's type)."""
        return dataclasses.replace(self, **{k: self._convert(k, v) for k, v in changes.items()})

    def with_overrides(self, items: list[str] | tuple[str, ...]) -> "RestorePolicy":
        """Apply ``KEY=VALUE`` strings (the ``--policy`` option)."""
        changes = {}
        for item in items:
            if "=" not in item:
                raise PolicyError(f"--policy {item!r}: write KEY=VALUE, e.g. --policy print_guard=false "
                                  f"(keys: {', '.join(self.keys())})")
            k, v = item.split("=", 1)
            changes[k.strip()] = v.strip()
        return self.replace(**changes)

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def _convert(self, key: str, value: Any) -> Any:
        fields = {f.name: f for f in dataclasses.fields(self)}
        if key not in fields:
            raise PolicyError(f"unknown restore policy entry {key!r}; known: {', '.join(fields)}")
        current = getattr(self, key)
        if not isinstance(value, str):
            return tuple(value) if isinstance(current, tuple) else value
        text = value.strip()
        try:
            if isinstance(current, bool):
                if text.lower() not in ("true", "false", "1", "0", "on", "off"):
                    raise ValueError(text)
                return text.lower() in ("true", "1", "on")
            if isinstance(current, float):
                return float(text)
            if isinstance(current, tuple):
                items = tuple(t.strip() for t in text.split(",") if t.strip())
                unknown = [t for t in items if key in CHOICES and t not in CHOICES[key]]
                if unknown:
                    raise PolicyError(f"restore policy entry {key!r}: {', '.join(unknown)} unknown; "
                                      f"choose from {', '.join(CHOICES[key])}")
                return items
            if isinstance(current, dict):
                kind = float if any(isinstance(v, float) for v in current.values()) else int
                items = {str(k): kind(v) for k, v in json.loads(text).items()}
                unknown = sorted(set(items) - set(LABELS))
                if unknown:
                    raise PolicyError(f"restore policy entry {key!r}: {', '.join(unknown)} unknown; "
                                      f"the labels are {', '.join(LABELS)}")
                return items
        except PolicyError:
            raise
        except (ValueError, TypeError, AttributeError, json.JSONDecodeError):
            raise PolicyError(f"restore policy entry {key!r} takes a {type(current).__name__} "
                              f"(now {current!r}); got {value!r}") from None
        return text

    def steps_for(self, tasks: list[str] | tuple[str, ...]) -> int:
        """Sampler steps of an M3UNet pass for a step with ``tasks``: the most any of them takes."""
        return max([int(self.task_steps.get(t, 1)) for t in tasks] + [1])

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def table(self) -> str:
        """Markdown: every entry, its value, what it decides and where the value came from."""
        rows = ["| entry | value | what it decides | where the value comes from |", "|---|---|---|---|"]
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            shown = ", ".join(v) if isinstance(v, tuple) else json.dumps(v) if isinstance(v, dict) else v
            rows.append(f"| `{f.name}` | `{shown}` | {f.metadata['decides']} | {f.metadata['origin']} |")
        return "\n".join(rows)


DEFAULT_POLICY = RestorePolicy()


def policy_from(overrides: Mapping[str, Any] | list[str] | tuple[str, ...] | None) -> RestorePolicy:
    """The default policy with ``overrides`` (a mapping, or ``KEY=VALUE`` strings) applied."""
    if not overrides:
        return DEFAULT_POLICY
    if isinstance(overrides, Mapping):
        return DEFAULT_POLICY.replace(**overrides)
    return DEFAULT_POLICY.with_overrides(list(overrides))
