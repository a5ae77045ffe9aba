"""Automatic restoration: classify -> plan -> run each step with the best pool model -> re-classify.

The loop (in the spirit of RestoreAgent / AgenticIR, with a small classifier instead of an MLLM):

1. The DegradationClassifier reads the image (:class:`~m3unet.classify.Finding`).
2. The planner orders the detected degradations by the measured order table
   (:func:`m3unet.plan.plan_from_finding`), unless the caller gives a plan.
3. For each step, every candidate model of the pool (:class:`~m3unet.pool.Pool`: the models tagged
   with the step's task, such as the shipped specialists and the user's, then M3UNet steered by
   the step's restoration text) restores the current image, the classifier re-reads each result,
   and the candidate that most reduces the step's own degradation is kept, the first one tried
   when it is within :data:`PREFER_MARGIN` of the best (:func:`effect`, :func:`accept`; side effects on the other labels are
   reported, and weighed at :data:`SIDE_WEIGHT`, measured). If no candidate lowers it by
   :data:`MIN_GAIN`, the step is rolled back (the image stays as it was).
4. Before each planned step the latest reading decides: a degradation no longer detected is
   skipped (with hysteresis: one found at the start stays while its probability is at least
   :data:`KEEP_THRESHOLD` and no step for it has run, see :func:`pending`); when the plan is done
   and something is still detected, the rest is planned again.
   The step's strength (and text) stays the one read on the input: the classifier was trained on
   degraded photos, not on half-restored ones, and its severities there read low (measured: a
   dark photo, denoised first, read as "light" low light and was then under-brightened). It stops when the image is clean, when nothing
   is left to try, or after the step budget.

Deterministic for a given seed (M3UNet's sampler is seeded per step; the classifier reads a fixed
crop grid). The output keeps the input's size, dtype, batch and channels (grey, RGB, RGBA with its
alpha untouched), unless the caller asks for the larger size of an upscaling pool model.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch

from .plan import JOINT_TASKS, MODEL_M3UNET, Plan, Step, load_order_table, plan_for, plan_from_finding
from .pool import Pool, resize, steps_for
from .classify import DEFAULT_CLASSIFIER

# The shipped DegradationClassifier weights (the automatic path loads them from here).
SHIPPED_CLASSIFIER = DEFAULT_CLASSIFIER  # one definition, in m3unet.classify
DEFAULT_BUDGET = 4
MAX_BUDGET = 16
# A step must lower its own degradation's score by at least this to be kept (removing a detected
# degradation lowers it by about 0.5 or more; smaller changes are read as classifier jitter).
MIN_GAIN = 0.05
# Weight of side effects (other detected degradations rising) against a step's gain. Measured by
# ``python -m m3unet eval --auto-rules`` (weights 0, 0.25, 0.5, 1): 0 keeps the most dB for the
# same harm, because the classifier reads M3UNet's dehazed or brightened outputs as "lowres".
SIDE_WEIGHT = 0.0
# Of the candidates for a step, the first (a model tagged with the step's task, e.g. a shipped
# specialist, before the general M3UNet) is kept unless another lowers the degradation by more
# than this: differences below it are classifier jitter, and the specialists measure better on
# their task (weights/m3unet-deblur.md).
PREFER_MARGIN = MIN_GAIN
# Hysteresis: a degradation found at the start stays on the to-do list while its probability is at
# least this and no step for it has run, although a re-classification reads it under the detection
# threshold. One step's output can push another degradation just under it: M3UNet's smooth,
# denoised version of a dark photo read as low light at p = 0.36 (`eval --auto`, lowlight+noise).
KEEP_THRESHOLD = 0.25
# A brightening (low light) step is rolled back when it pushes more than this share of the pixels
# into saturation (a channel at 0.98 or more) beyond its input's: the photo was not dark. Measured
# (``scripts/exposure_probe.py``, M3UNet's low-light pass on the 9 held-out photos): made dark
# (27 cases, low light 0.1-0.5, with or without noise) it clipped no pixel; normally exposed (18
# cases, sharp or blurred) it clipped 12-80 % more and lost 5-30 dB. A borderline low-light
# reading on a normally exposed photo is what brings such a step.
EXPOSURE_CLIP_RISE = 0.05

# The kernel-aware deblur (m3unet.deblur.KernelDeblur) runs first in an automatic plan when the
# classifier reads the image as blurred (any of these labels: it confuses defocus with low
# resolution and motion) AND the blur estimator reads a Gaussian blur it can undo
# (m3unet.deblur.KernelDeblur.gate: at least DEFOCUS_SIGMA px, noise the deconvolution can take,
# no JPEG blocks). The estimator, not the classifier, judges that step: the
# classifier reads deconvolved images poorly (measured in `eval` on blur2: it preferred the M3UNet
# pass, 1 dB worse, on 5 of 9 photos). The other blur-like steps are then not planned.
DEFOCUS_LABELS = ("blur", "lowres", "motion")

# Under the classifier's minimum side the blind M3UNet pass takes a noise step's sampler steps
# (m3unet.pool.TASK_STEPS) when the blur estimator reads at least this much noise (1/255).
# Measured on the 64 and 96 px held-out crops that `eval --small-sides` uses (a probe script): noisy,
# compressed and mixed crops read 7-41, clean and down-sampled ones 0-5 (one macro wing texture
# 36); a second step gains 0.5-0.6 dB on noise25, JPEG q15 and the mix and costs clean crops.
SMALL_NOISE = 6.0

# ... and goes to the small-print specialist (m3unet.pool.SMALL_SPECIALISTS) when the estimator reads
# it as enlarged: soft, with bicubic ringing (blockiness BLOCKY-ENLARGED_BLOCKY). Measured: x4
# down-sampled text lines read 1.4-2.0 px and blockiness 1.17-1.34; JPEG q15 photo crops 1.3-3.2;
# clean and down-sampled photo crops of 64-96 px read under 1.2 px; photo crops down-sampled x3-4 can
# read as enlarged too, so the image must also look like print (m3unet.textimage.looks_like_print).
ENLARGED_BLOCKY = 1.5

# The classifier was trained on photos: on print it reads the paper as haze and a light-on-dark page
# as low light. On an image that looks like print (m3unet.textimage.looks_like_print) the automatic
# plan does not use these labels. Measured (out/pages_clean.py, session 10): of 12 clean rendered
# 256 px text pages (`render_page`, negative seeds), the restore changed 10 (PSNR 14-35 dB against
# the page), dehazing 7 and brightening 2. A hazed or dark document rarely keeps the ink contrast
# that test asks for, so those still get the steps.
PRINT_UNREAD = ("haze", "lowlight")


def label_score(finding, label: str) -> float:
    """How much of ``label`` a reading shows: ``p * (1 + s) / 2`` (0.5 at the lightest sure
    detection, 1 at the heaviest)."""
    return float(finding.probabilities.get(label, 0.0) * (1 + finding.severity.get(label, 0.0)) / 2)


def degradation_score(finding) -> float:
    """The remaining degradation of a reading: :func:`label_score` summed over the detected labels
    (0 for a clean reading)."""
    return float(sum(label_score(finding, k) for k in finding.labels))


@dataclass
class Effect:
    """What a candidate did to the reading: its own degradation's drop, the others' rise."""
    own_drop: float
    side_rise: float

    @property
    def benefit(self) -> float:
        return self.own_drop - SIDE_WEIGHT * self.side_rise


def effect(before, after, task: str | Sequence[str]) -> Effect:
    """Compare two readings for a step removing ``task`` (or the tasks of a joint step: their drops
    add up)."""
    own = {task} if isinstance(task, str) else set(task)
    others = lambda f: sum(label_score(f, k) for k in f.labels if k not in own)  # noqa: E731
    return Effect(sum(label_score(before, k) - label_score(after, k) for k in own), others(after) - others(before))


def pending(finding, first_labels: list[str], tried: set[str]) -> list[str]:
    """What is left to restore: the detected labels, plus those found at the start that no step
    has addressed yet and whose probability is still at least :data:`KEEP_THRESHOLD`."""
    held = [t for t in first_labels if t not in tried and t not in finding.labels
            and finding.probabilities.get(t, 0.0) >= KEEP_THRESHOLD]
    return list(finding.labels) + held


def accept(e: Effect, planned_by_user: bool) -> bool:
    """Keep a step? Planned automatically: it must lower its own degradation by MIN_GAIN (and gain
    more than its side effects cost, at :data:`SIDE_WEIGHT`). Given by the user: it is only undone
    if it does harm (its benefit is below -MIN_GAIN).

    Why not the total score: the classifier reads M3UNet's outputs as slightly soft ("lowres")
    after dehazing or brightening, so a total-score rule rolls back good dehazing/brightening
    steps and keeps steps for degradations the image does not have (any M3UNet pass lowers some
    score a little). ``python -m m3unet eval --auto-rules`` measures the rules against PSNR.
    """
    if planned_by_user:
        return e.benefit > -MIN_GAIN
    return e.own_drop >= MIN_GAIN and e.benefit > 0


def clipped_share(x: torch.Tensor) -> float:
    """Share of the pixels of ``x`` (channels at dim -3, 0-1) with a channel at 0.98 or more."""
    return float((x[..., :3, :, :].amax(-3) >= 0.98).float().mean())


def load_shipped_classifier():
    """The shipped classifier as a callable ``IMAGE -> list[Finding]``, or None if its file is missing."""
    if not SHIPPED_CLASSIFIER.is_file():
        return None
    from .classify import Classifier, load_classifier
    return Classifier(load_classifier(SHIPPED_CLASSIFIER))


def classifier_or_shipped(path=None):
    """The classifier at ``path`` (errors name a missing or wrong file), or without a path the
    shipped one (None if its file is missing), as a callable ``IMAGE -> list[Finding]``."""
    if not path:
        return load_shipped_classifier()
    from .classify import Classifier, load_classifier
    return Classifier(load_classifier(path))


@dataclass
class AutoProgress:
    """What the progress callback receives: model runs done / planned, and what is running."""
    done: int
    total: int
    message: str


@dataclass
class Attempt:
    """One candidate model's try at a step: the reading of its result."""
    model: str
    score: float | None          # remaining degradation after it
    own_drop: float | None       # how much the step's own degradation went down
    side_rise: float | None      # how much the other detected degradations went up
    detected: list[str]


@dataclass
class StepRecord:
    """What happened to one plan step."""
    index: int
    task: str  # the step's Step.label: its task, or a joint step's tasks joined by "+" ("jpeg+noise")
    strength: float
    text: str
    attempts: list[Attempt]
    chosen: str | None
    outcome: str  # "kept", "rolled back", "skipped", "applied" (no classifier to score it)
    score_before: float | None
    score_after: float | None
    why: str

    @property
    def tasks(self) -> list[str]:
        return self.task.split("+")


@dataclass
class AutoReport:
    """The report of one image: first reading, plan, steps, last reading and why it stopped."""
    detected: str
    score: float | None
    plan: Plan
    steps: list[StepRecord] = field(default_factory=list)
    final: str = ""
    final_score: float | None = None
    stopped: str = ""
    seconds: float = 0.0
    retry: str = ""  # why and how the plan was retried in another order (automatic plans)
    detected_labels: list[str] = field(default_factory=list)  # first reading
    final_labels: list[str] = field(default_factory=list)     # last reading

    @property
    def removed(self) -> int:
        """How many of the first reading's degradations the last reading no longer shows."""
        return len(set(self.detected_labels) - set(self.final_labels))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["plan"] = self.plan.to_dict()
        return d

    def text(self) -> str:
        """A human-readable account: what was found, what was done and why."""
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        lines = [f"detected: {self.detected}" + (f" (degradation score {fmt(self.score)})" if self.score is not None
                                                  else ""),
                 f"plan: {self.plan.summary()}"]
        for r in self.steps:
            tried = "; ".join(f"{a.model}: {r.task} {-a.own_drop:+.2f}, others {a.side_rise:+.2f}, score "
                              f"{fmt(a.score)}" if a.own_drop is not None else a.model for a in r.attempts)
            head = f"step {r.index} {r.task}: {r.outcome}"
            if r.chosen and r.outcome != "rolled back":
                head += f" {r.chosen}"
            lines.append(head + (f" [{tried}]" if tried else "") + (f"; {r.why}" if r.why else ""))
            if any(a.model == MODEL_M3UNET for a in r.attempts):
                lines.append(f"    m3unet text: {r.text!r}")
        if self.retry:
            lines.append(f"retry: {self.retry}")
        if self.final:
            lines.append(f"result: {self.final} (degradation score {fmt(self.final_score)})")
        lines.append(f"stopped: {self.stopped} ({self.seconds:.1f} s)")
        return "\n".join(lines)


@dataclass
class AutoResult:
    image: torch.Tensor          # [B, H, W, C], the input's dtype and channels
    reports: list[AutoReport]

    def text(self) -> str:
        if len(self.reports) == 1:
            return self.reports[0].text()
        return "\n\n".join(f"image {i}:\n{r.text()}" for i, r in enumerate(self.reports))

    def plan_json(self) -> str:
        """The plan(s) that ran, as editable JSON (one plan, or a list for a batch)."""
        import json
        if len(self.reports) == 1:
            return self.reports[0].plan.to_json()
        return json.dumps([r.plan.to_dict() for r in self.reports], indent=1)


def _estimator_report(step: Step, model: str, done: str, detected: str, why: str, t0: float) -> "AutoReport":
    """The report of an image under the classifier's minimum side that the blur estimator sent to one
    tool (the kernel-aware deblur or the small-print specialist): one applied step."""
    record = StepRecord(1, step.task, step.strength, step.text, [], model, "applied", None, None, done)
    report = AutoReport(detected, None, Plan([step]), steps=[record], stopped=f"{why}: the blur estimator alone decided")
    report.seconds = time.time() - t0
    return report


def _reading(finding) -> str:
    return finding.report() if finding is not None else "not classified"


class AutoRestorer:
    """Automatic restoration with a classifier, the measured planner and a model pool."""

    def __init__(self, pool: Pool, classifier: Callable[[torch.Tensor], list] | None, order_table=None):
        self.pool = pool
        self.classifier = classifier
        self.table = load_order_table() if order_table is None else order_table

    def classify(self, x: torch.Tensor, unread: Sequence[str] = ()):
        """Read one ``[3, H, W]`` float image (None without a classifier); the labels in ``unread``
        (:data:`PRINT_UNREAD` for an automatic plan on print) are read as absent, with a note."""
        if self.classifier is None:
            return None
        f = self.classifier(x.permute(1, 2, 0)[None])[0]
        unread = [k for k in unread if k in f.probabilities]
        if not unread:
            return f
        import dataclasses
        note = f"looks like print: {' and '.join(unread)} not read (the classifier reads paper as haze)"
        return dataclasses.replace(f, probabilities={k: 0.0 if k in unread else v for k, v in f.probabilities.items()},
                                   note="; ".join(n for n in (f.note, note) if n))

    def run(self, image: torch.Tensor, plan: Plan | Sequence[Plan] | None = None, budget: int = DEFAULT_BUDGET,
            seed: int = 0, upscale: bool = False, rollback: bool = True, retry: bool = True,
            progress: Callable[[AutoProgress], None] | None = None) -> AutoResult:
        """Restore an IMAGE batch ``[B, H, W, C]``; returns the image and a report per image.

        ``plan``: None plans from the classifier; a :class:`Plan` (or one per image) runs as
        written (each step still scored and rolled back if it makes things worse, unless
        ``rollback`` is False). ``upscale``: return the size of the pool's largest scale instead of
        the input's. ``retry``: retry an automatic plan with rolled-back degradations first (see
        :meth:`_restore_one`). ``progress`` is called after every model run and inside M3UNet's
        tiles (it may raise to interrupt).
        """
        from .pipeline import InputError, _to_rgb_float, check_image
        image = check_image(image)
        if not 1 <= int(budget) <= MAX_BUDGET:
            raise InputError(f"step budget must be between 1 and {MAX_BUDGET}; got {budget}")
        b, h, w, c = image.shape
        plans = list(plan) if isinstance(plan, (list, tuple)) else [plan] * b
        if len(plans) != b:
            raise InputError(f"got {len(plans)} plans for a batch of {b} images; give one plan or one per image")
        scale = self.pool.max_scale if upscale else 1
        target = (h * scale, w * scale)
        outs, reports = [], []
        for i in range(b):
            rgb, report = self._restore_one(_to_rgb_float(image[i]), plans[i], int(budget), int(seed) + 104_729 * i,
                                            target, rollback, retry, progress)
            outs.append(resize(rgb, target))
            reports.append(report)
        return AutoResult(_like(image, outs, target), reports)

    # ------------------------------------------------------------------ one image
    def _restore_one(self, x: torch.Tensor, plan: Plan | None, budget: int, seed: int, target: tuple[int, int],
                     rollback: bool, retry: bool, progress) -> tuple[torch.Tensor, AutoReport]:
        """Run the plan; if an automatic plan had a step for a degradation of the first reading rolled
        back after other steps were kept, retry once with the rolled-back degradations first, and
        keep the run that removed more of the first reading's degradations (ties: the lower
        remaining score, by at least MIN_GAIN; else the first run, in the measured order).

        Why: the classifier judges a step on the image as it is at that point, and reads some
        half-restored images poorly (measured, ``eval --auto``: after denoising, a brightening
        step on a dark photo read as *more* low light and was rolled back, losing ~6 dB, while
        the same step on the noisy photo lowered it, and removed the noise with it). The measured
        order stays the first choice.
        """
        t0 = time.time()
        counter = {"done": 0, "total": 0}

        def tick(message: str, add: int = 0, total: int | None = None) -> None:
            counter["done"] += add
            if total is not None:
                counter["total"] = total
            if progress is not None:
                progress(AutoProgress(counter["done"], max(counter["total"], counter["done"], 1), message))

        y, report = self._attempt(x, plan, budget, seed, target, rollback, tick, counter)
        kept = [t for r in report.steps if r.outcome == "kept" for t in r.tasks]
        rolled = [t for r in report.steps if r.outcome == "rolled back" for t in r.tasks if t in report.detected_labels]
        if retry and plan is None and self.classifier is not None and rollback and kept and rolled:
            order = rolled + kept
            y2, report2 = self._attempt(x, None, budget, seed, target, rollback, tick, counter, order)
            first = (f"the measured order kept {', '.join(kept)} and rolled back {', '.join(rolled)} (removed "
                     f"{report.removed} of {len(report.detected_labels)}, score {report.final_score:.2f})")
            second = (f"{' > '.join(order)} first removed {report2.removed}, score {report2.final_score:.2f}")
            if (report2.removed, -report2.final_score) > (report.removed, -report.final_score + MIN_GAIN):
                y, report = y2, report2
                report.retry = f"{first}; this run ({second}) did better"
            else:
                report.retry = f"{first}; a retry ({second}) did not do better: the first run is returned"
        report.seconds = time.time() - t0
        return y, report

    def _attempt(self, x: torch.Tensor, plan: Plan | None, budget: int, seed: int, target: tuple[int, int],
                 rollback: bool, tick, counter: dict, order: list[str] | None = None
                 ) -> tuple[torch.Tensor, AutoReport]:
        """One run of the loop (``order``: tasks to put first in an automatic plan)."""
        t0 = time.time()

        # Under the classifier's minimum side (``Classifier.min_side``, from its weights file) its
        # reading is not trusted: the shipped classifier reads most 64 px images as motion blurred.
        min_side = int(getattr(self.classifier, "min_side", 0) or 0)
        small = min(x.shape[-2:]) < min_side
        if plan is None and (self.classifier is None or small):
            # No classifier weights, or an image too small for its reading to be trusted: one blind
            # M3UNet pass (the model is trained for empty text).
            if self.pool.restorer is None:
                raise ValueError("automatic restore needs a classifier, a plan, or M3UNet in the pool")
            if self.classifier is None:
                detected, why = "not classified (no classifier weights)", "no DegradationClassifier weights"
            else:
                h, w = x.shape[-2:]
                detected = f"not classified ({w}x{h} px is under {min_side} px on its short side)"
                why = (f"the image is {w}x{h} px: under {min_side} px on its short side the classifier's "
                       "reading is unreliable (give a plan to restore it step by step)")
            # The blur estimator reads 64 px crops on its own: it decides alone whether to deconvolve,
            # and how many sampler steps the blind pass takes.
            reading = self._estimator_reading(x)
            defocus = self._defocus_step(x, None, reading)
            if defocus is not None:
                step, est = defocus
                tick(f"blur with {step.model}", total=1)
                y = self.pool.models[step.model].restore(
                    x.permute(1, 2, 0)[None], seed=seed, tile=self.pool.tile, sigma=est.sigma, noise=est.noise,
                    progress=lambda _p: tick(f"blur with {step.model}"))
                tick("done", add=1)
                return y[0].permute(2, 0, 1), _estimator_report(
                    step, step.model, f"the blur estimator read a Gaussian blur of {est.sigma:.2f} px (noise "
                    f"{est.noise:.1f}/255): deconvolved, then cleaned up by M3UNet", detected, why, t0)
            small_print = self._small_print(x, reading)
            if small_print is not None:
                step, model = small_print
                tick(f"lowres with {model.name}", total=1)
                y = model.run(x, step, seed, 1, self.pool.tile, check=lambda: tick(f"lowres with {model.name}"))
                tick("done", add=1)
                return y, _estimator_report(
                    step, model.name, f"the blur estimator read it as enlarged: soft ({reading.sigma:.2f} px) with "
                    f"ringing (blockiness {reading.blocky:.2f}) and no noise; restored by the small-print specialist",
                    detected, why, t0)
            noisy = not self.pool.steps and reading is not None and reading.noise >= SMALL_NOISE
            steps = self.pool.steps or (steps_for("noise", None) if noisy else 1)
            tick("blind M3UNet pass", total=1)
            y = self.pool.restorer.restore(x.permute(1, 2, 0)[None], text="", steps=steps, seed=seed,
                                           tile=self.pool.tile, progress=lambda _p: tick("blind M3UNet pass"))
            tick("done", add=1)
            how = (f"the blur estimator read noise {reading.noise:.1f}/255, so the pass took {steps} sampler steps "
                   "(as a noise step does)" if noisy else f"{steps} sampler step{'s' if steps > 1 else ''}")
            report = AutoReport(detected, None, Plan([]),
                                stopped=f"{why}: restored blind with one M3UNet pass and empty text ({how})")
            report.seconds = time.time() - t0
            return y[0].permute(2, 0, 1), report

        from .textimage import looks_like_print
        unread = PRINT_UNREAD if plan is None and self.classifier is not None and looks_like_print(x) else ()
        f = self.classify(x, unread)
        s = degradation_score(f) if f is not None else None
        first_labels = f.labels if f is not None else []
        fixed = plan is not None
        plan = plan if fixed else plan_from_finding(f, self.table, joint=self._joint_tasks())
        if order:
            rank = {t: i for i, t in enumerate(order)}
            plan = Plan(sorted(plan.steps, key=lambda st: min(rank.get(t, len(rank)) for t in st.tasks)))  # stable
        tried: set[str] = set()
        defocus = self._defocus_step(x, f) if not fixed and f is not None else None
        if defocus is not None:  # the kernel-aware deblur covers the blur-like steps
            rest = [st.only(t for t in st.tasks if t not in DEFOCUS_LABELS) for st in plan.steps]
            plan = Plan([defocus[0]] + [st for st in rest if st is not None])
        report = AutoReport(_reading(f), s, Plan(list(plan.steps)))
        queue = list(plan.steps)
        runs = lambda steps: sum(len(self.pool.candidates(st, fixed)) if f is not None else 1  # noqa: E731
                                 for st in steps)
        tick("planned", total=runs(queue[:budget]))  # also checks every named model exists
        executed = 0
        while True:
            if not queue:
                if fixed:
                    report.stopped = "plan done"
                    break
                todo = pending(f, first_labels, tried)
                left = {t: f.severity[t] for t in todo if t not in tried}
                if not todo:
                    report.stopped = "clean: no degradation detected"
                    break
                if not left:
                    report.stopped = f"still detected ({', '.join(f.labels)}) but every step for it was tried"
                    break
                extra = plan_for(left, self.table, joint=self._joint_tasks(), confidence=f.probabilities).steps
                report.plan.steps.extend(extra)
                queue = list(extra)
            if executed >= budget:
                not_run = ", ".join(t for st in queue for t in st.tasks)
                report.stopped = f"step budget ({budget}) reached; not run: {not_run}"
                break
            step = queue.pop(0)
            index = len(report.steps) + 1
            if defocus is not None and step is defocus[0]:
                executed += 1
                tick(f"step {index}: blur", total=counter["done"] + 1 + runs(queue[:budget - executed]))
                x, f, s = self._run_defocus(index, step, defocus[1], x, f, s, seed, target, tick, report,
                                              unread)
                tried.update(DEFOCUS_LABELS)
                continue
            if not fixed:
                todo = pending(f, first_labels, tried)
                if not todo:
                    report.stopped = "clean: no degradation detected"
                    break
                left_of_step = step.only(todo)
                if left_of_step is None:
                    tried.update(step.tasks)
                    report.steps.append(StepRecord(index, step.label, step.strength, "", [], None, "skipped",
                                                   s, s, "no longer detected"))
                    continue
                if left_of_step is not step:  # a joint step of which some tasks are done
                    tried.update(t for t in step.tasks if t not in left_of_step.tasks)
                    step = left_of_step
            tried.update(step.tasks)
            # A solo specialist (m3unet.pool.M3UNetPoolModel) serves an image as given that shows its
            # degradation alone.
            read = todo if not fixed else (f.labels if f is not None else [])
            untouched = not any(r.outcome in ("kept", "applied") for r in report.steps)
            alone = untouched and set(read) == {step.task} == set(step.tasks)
            names = self.pool.candidates(step, strict=fixed, alone=alone)
            task = step.label
            if not names:
                report.steps.append(StepRecord(index, task, step.strength, "", [], None, "skipped", s, s,
                                               "no model in the pool serves it"))
                continue
            executed += 1
            if f is None:
                names = names[:1]  # nothing to compare candidates with: the first (M3UNet for "auto")
            tick(f"step {index}: {task}", total=counter["done"] + len(names) + runs(queue[:budget - executed]))
            results = []
            for k, name in enumerate(names):
                y = self._run(name, x, step, seed + 7919 * index + k, tick)
                y = self._fit(y, x.shape[-2:], target)
                fy = self.classify(y, unread)
                e = effect(f, fy, step.tasks) if fy is not None else None
                results.append((name, y, fy, e))
                tick(f"step {index}: {task} with {name}", add=1)
            attempts = [Attempt(n, degradation_score(fy) if fy is not None else None, e and round(e.own_drop, 4),
                                e and round(e.side_rise, 4), fy.labels if fy is not None else [])
                        for n, _, fy, e in results]
            text = step.instruction()
            if f is None:  # no classifier (a given plan): apply the first candidate as written
                name, y, _, _ = results[0]
                x = y
                report.steps.append(StepRecord(index, task, step.strength, text, attempts, name,
                                               "applied", None, None, "no classifier to score it"))
                continue
            best = max(r[3].benefit for r in results)
            name, y, fy, e = next(r for r in results if r[3].benefit >= best - PREFER_MARGIN)
            sy = degradation_score(fy)
            clip_rise = clipped_share(y) - clipped_share(x) if "lowlight" in step.tasks else 0.0
            overexposed = clip_rise > EXPOSURE_CLIP_RISE
            if (accept(e, fixed) and not overexposed) or not rollback:
                why = (f"the largest drop in {task} of {len(results)} candidates (or within {PREFER_MARGIN} of it, "
                       "tried first)") if len(results) > 1 else ""
                if len(step.tasks) > 1:
                    why = (f"one joint pass for {' and '.join(step.tasks)} (m3unet.plan.JOINT_TASKS)"
                           + (f"; {why}" if why else ""))
                if getattr(self.pool.models.get(name), "solo", False):
                    why = f"a {step.task} specialist, chosen because {step.task} is the only degradation read"
                if not accept(e, fixed):
                    why = "kept although it did not help (rollback off)"
                elif overexposed:
                    why = f"kept although it pushed {clip_rise:.0%} more of the pixels into saturation (rollback off)"
                report.steps.append(StepRecord(index, task, step.strength, text, attempts, name, "kept", s, sy, why))
                x, f, s = y, fy, sy
            else:
                if overexposed:
                    why = (f"the best candidate ({name}) pushed {clip_rise:.0%} more of the pixels into saturation: "
                           f"the photo was not dark (a brightening step may clip at most {EXPOSURE_CLIP_RISE:.0%} more)")
                else:
                    need = f"to lower it by at least {MIN_GAIN}" if not fixed else "not to do harm"
                    why = (f"the best candidate ({name}) changed {task} by {-e.own_drop:+.2f} and the others by "
                           f"{e.side_rise:+.2f}; a step needs {need}")
                report.steps.append(StepRecord(index, task, step.strength, text, attempts, name, "rolled back",
                                               s, s, why))
        report.final, report.final_score = _reading(f), s
        report.detected_labels = list(first_labels)
        if f is not None:  # still there: read now, or held (see KEEP_THRESHOLD) with no step for it kept
            kept = {t for r in report.steps if r.outcome in ("kept", "applied") for t in r.tasks}
            report.final_labels = pending(f, first_labels, kept)
        else:
            report.final_labels = []
        report.seconds = time.time() - t0
        return x, report

    def _joint_tasks(self) -> tuple[str, ...]:
        """The tasks an automatic plan may join into one M3UNet pass (:data:`m3unet.plan.JOINT_TASKS`),
        less those a user's image model in the pool serves: that model gets its own step to compete in."""
        from .pool import PoolModel
        served = {t for m in self.pool.models.values() if isinstance(m, PoolModel) for t in m.tasks}
        return tuple(t for t in JOINT_TASKS if t not in served)

    def _deblur_tool(self):
        from .deblur import KernelDeblur
        return next((m for m in self.pool.models.values() if isinstance(m, KernelDeblur)), None)

    def _estimator_reading(self, x: torch.Tensor):
        """The blur estimator's reading of ``x`` (:class:`m3unet.deblur.BlurEstimate`), or None
        when the pool has no kernel-aware deblur."""
        tool = self._deblur_tool()
        return tool.reading(x) if tool is not None else None

    def _small_print(self, x: torch.Tensor, reading):
        """``(Step, model)`` for the small-print specialist (:attr:`m3unet.pool.M3UNetPoolModel.small`)
        when the blur estimator reads a small image as enlarged: soft (a blur of at least
        DEFOCUS_SIGMA px) with the ringing of bicubic enlargement (blockiness from BLOCKY up to
        ENLARGED_BLOCKY; JPEG blocks read higher) and no noise, and the image looks like print
        (:func:`m3unet.textimage.looks_like_print`); else None."""
        from .deblur import BLOCKY, DEFOCUS_SIGMA
        from .textimage import looks_like_print
        model = next((m for m in self.pool.models.values() if getattr(m, "small", False) and "lowres" in m.tasks),
                     None)
        if model is None or reading is None:
            return None
        if not (reading.sigma >= DEFOCUS_SIGMA and BLOCKY <= reading.blocky < ENLARGED_BLOCKY
                and reading.noise < SMALL_NOISE and looks_like_print(x)):
            return None
        strength = round(min(1.0, max(0.0, (reading.sigma - 0.6) / 1.2)), 2)
        return Step("lowres", strength, model.name), model

    def _defocus_step(self, x: torch.Tensor, f, reading=None):
        """``(Step, reading)`` for the kernel-aware deblur when the classifier reads a blur-like
        label (``f`` None: no reading to ask) and the blur estimator reads a Gaussian blur it can
        undo (:meth:`m3unet.deblur.KernelDeblur.gate`; ``reading``: the estimator's reading if
        already made); else None."""
        tool = self._deblur_tool()
        if tool is None or (f is not None and not any(k in f.labels for k in DEFOCUS_LABELS)):
            return None
        est = tool.gate(x, reading)
        if est is None:
            return None
        strength = round(min(1.0, max(0.0, (est.sigma - 0.6) / 3.0)), 2)  # the blur severity scale
        return Step("blur", strength, tool.name, est.describe()), est

    def _run_defocus(self, index: int, step: Step, est, x: torch.Tensor, f, s, seed: int, target, tick,
                     report: "AutoReport", unread: Sequence[str] = ()):
        tool = self.pool.models[step.model]
        y = tool.restore(x.permute(1, 2, 0)[None], seed=seed + 7919 * index, tile=self.pool.tile,
                         progress=lambda _p: tick(f"blur with {step.model}"), sigma=est.sigma,
                         noise=est.noise)[0].permute(2, 0, 1)
        y = self._fit(y, x.shape[-2:], target)
        fy = self.classify(y, unread)
        sy = degradation_score(fy)
        e = effect(f, fy, "blur")
        attempts = [Attempt(step.model, sy, round(e.own_drop, 4), round(e.side_rise, 4), fy.labels)]
        labels = ", ".join(k for k in f.labels if k in DEFOCUS_LABELS)
        report.steps.append(StepRecord(index, "blur", step.strength, step.text, attempts, step.model, "kept", s, sy,
                                       f"the classifier read {labels} and the blur estimator a Gaussian blur of "
                                       f"{est.sigma:.2f} px (noise {est.noise:.1f}/255): deconvolved, then cleaned "
                                       "up by M3UNet; judged by the estimator, not by the classifier"))
        tick(f"step {index}: blur with {step.model}", add=1)
        return y, fy, sy

    def _run(self, name: str, x: torch.Tensor, step: Step, seed: int, tick) -> torch.Tensor:
        return self.pool.run(name, x, step, seed, check=lambda: tick(f"{step.task} with {name}"))

    @staticmethod
    def _fit(y: torch.Tensor, size, target: tuple[int, int]) -> torch.Tensor:
        """Back to the current size, or (asked for the larger size) up to ``target`` at most."""
        size = tuple(size)
        if tuple(y.shape[-2:]) == size:
            return y
        if y.shape[-2] > size[0] and size != tuple(target):
            return resize(y, target)
        return resize(y, size)


def _like(image: torch.Tensor, outs: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """RGB float ``[3, H, W]`` results -> the input's IMAGE layout, dtype and channels (alpha kept)."""
    b, h, w, c = image.shape
    res = []
    for i, rgb in enumerate(outs):
        y = rgb.permute(1, 2, 0)
        if c == 1:
            y = (y * torch.tensor([0.299, 0.587, 0.114])).sum(-1, keepdim=True)
        elif c == 4:
            a = image[i][..., 3:].float() / (255 if image.dtype == torch.uint8 else 1)
            if (h, w) != tuple(size):
                a = resize(a.permute(2, 0, 1), size).permute(1, 2, 0)
            y = torch.cat([y, a], -1)
        res.append(y)
    out = torch.stack(res).clamp(0, 1)
    if image.dtype == torch.uint8:
        return (out * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    return out.to(image.dtype)
