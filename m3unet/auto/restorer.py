"""Automatic restoration: classify -> plan -> run each step with the best pool model -> re-classify.

The loop, in the spirit of RestoreAgent / AgenticIR with a small classifier in place of an MLLM:

1. The DegradationClassifier reads the image (:class:`~m3unet.auto.classifier.Finding`).
2. The planner orders what it found by the measured order table
   (:func:`m3unet.auto.plan.plan_from_finding`), unless the caller gives a plan.
3. For each step, every candidate of the pool (:meth:`m3unet.auto.pool.Pool.candidates`) restores
   the current image, the classifier re-reads each result, and the policy judges: keep the
   candidate that most lowers the step's own degradation, or roll the step back
   (:mod:`m3unet.auto.guards`).
4. Before each planned step the latest reading decides what is left; when the plan is done and
   something is still found, the rest is planned again. It stops when the image reads clean, when
   nothing is left to try, or at the step budget.

Every threshold and rule comes from the restore policy (:class:`m3unet.auto.policy.RestorePolicy`);
the decisions are returned as data (:mod:`m3unet.auto.decisions`) and put into words by
:mod:`m3unet.auto.report`. Deterministic for a given seed. The output keeps the input's size,
dtype, batch and channels (grey, RGB, RGBA with its alpha untouched), unless the caller asks for
the larger size of an upscaling pool model.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ..core.image import InputError, check_image, like_input, resize, to_rgb_float
from . import guards
from .classifier import DEFAULT_CLASSIFIER, Classifier, load_classifier
from .decisions import Attempt, AutoProgress, AutoReport, AutoResult, Reading, Reason, StepRecord
from .motion import motion_severity
from .plan import MODEL_M3UNET, Plan, Step, load_order_table, plan_for, plan_from_finding
from .policy import DEFAULT_POLICY, RestorePolicy
from .pool import Pool, PoolModel
from .scoring import degradation_score, effect

# The shipped DegradationClassifier weights (the automatic path loads them from here).
SHIPPED_CLASSIFIER = DEFAULT_CLASSIFIER
DEFAULT_BUDGET = 4
MAX_BUDGET = 16


def load_shipped_classifier():
    """The shipped classifier as a callable ``IMAGE -> list[Finding]``, or None if its file is missing."""
    if not SHIPPED_CLASSIFIER.is_file():
        return None
    return Classifier(load_classifier(SHIPPED_CLASSIFIER))


def classifier_or_shipped(path=None):
    """The classifier at ``path`` (errors name a missing or wrong file), or without a path the
    shipped one (None if its file is missing), as a callable ``IMAGE -> list[Finding]``."""
    if not path:
        return load_shipped_classifier()
    return Classifier(load_classifier(path))


class _Progress:
    """Counts model runs (with fractions inside a run) and reports them to the caller's callback."""

    def __init__(self, callback: Callable[[AutoProgress], None] | None):
        self.callback = callback
        self.done = 0.0
        self.total = 0.0
        self.inside = 0.0  # fraction of the current run done

    def plan(self, runs: float) -> None:
        """The runs still to come from here (the total grows or shrinks as the plan changes)."""
        self.total = self.done + max(runs, 1)
        self.emit("planned")

    def within(self, fraction: float, message: str) -> None:
        self.inside = min(max(fraction, 0.0), 0.999)
        self.emit(message)

    def finish_run(self, message: str) -> None:
        self.done += 1
        self.inside = 0.0
        self.total = max(self.total, self.done)
        self.emit(message)

    def emit(self, message: str) -> None:
        if self.callback is not None:
            done = self.done + self.inside
            self.callback(AutoProgress(round(done, 3), round(max(self.total, done, 1.0), 3), message))


@dataclass
class _State:
    """One run of the loop: the current image and reading, and what was done."""
    x: torch.Tensor
    finding: object | None
    score: float | None
    fixed: bool                 # the plan was given: run as written
    unread: tuple[str, ...]     # readings ignored all run: on_print + leave_alone + the low-light and haze rules' (faint, lit, deep, later)
    first_labels: list[str]
    report: AutoReport
    queue: list[Step]
    defocus: tuple[Step, object] | None = None
    tried: set[str] = field(default_factory=set)
    executed: int = 0
    read: list[str] = field(default_factory=list)  # what the latest reading (with hysteresis) shows
    print_like: bool = False    # the image looks like print (guards.looks_like_print)
    on_print: tuple[str, ...] = ()  # the print guard's share of ``unread``
    later: tuple[str, ...] = ()     # the as-given rules' share: not read on the image as given
    brighten: float = 1.0           # share of a brightening step's change kept (guards.brightening_share)


_STOP = object()  # _narrow: the image reads clean, stop the run


class AutoRestorer:
    """Automatic restoration with a classifier, the measured planner, a model pool and a policy."""

    def __init__(self, pool: Pool, classifier: Callable[[torch.Tensor], list] | None, order_table=None,
                 policy: RestorePolicy | None = None):
        self.pool = pool
        self.classifier = classifier
        self.table = load_order_table() if order_table is None else order_table
        self.policy = policy or getattr(pool, "policy", None) or DEFAULT_POLICY

    # ------------------------------------------------------------------ reading
    def classify(self, x: torch.Tensor, unread: Sequence[str] = ()):
        """Read one ``[3, H, W]`` float image (None without a classifier), at the policy's detection
        threshold; the labels in ``unread`` (the print guard's) are read as absent."""
        return self._hide(self._read(x), unread)

    def _read(self, x: torch.Tensor):
        if self.classifier is None:
            return None
        image = x.permute(1, 2, 0)[None]
        # the shipped kind of classifier reads at the policy's decision points for acting
        f = (self.classifier(image, offsets=self.policy.act_offsets) if isinstance(self.classifier, Classifier)
             else self.classifier(image))[0]
        if getattr(f, "threshold", None) != self.policy.detection_threshold:
            f = dataclasses.replace(f, threshold=self.policy.detection_threshold)
        return f

    def _reread(self, st: "_State", y: torch.Tensor):
        """Read a step's result with the run's ignored readings hidden; notes when an as-given rule
        (low light, haze) hid a reading that would have been acted on."""
        raw = self._read(y)
        for k in st.later:
            if raw is not None and k in raw.labels:
                st.report.fired(f"{k}_as_given")
        return self._hide(raw, st.unread)

    @staticmethod
    def _hide(f, unread: Sequence[str]):
        ignored = [k for k in unread if f is not None and k in f.probabilities]
        if not ignored:
            return f
        return dataclasses.replace(f, probabilities={k: 0.0 if k in ignored else v for k, v in f.probabilities.items()})

    # ------------------------------------------------------------------ batch
    def run(self, image: torch.Tensor, plan: Plan | Sequence[Plan] | None = None, budget: int = DEFAULT_BUDGET,
            seed: int = 0, upscale: bool = False, rollback: bool = True, retry: bool = True,
            progress: Callable[[AutoProgress], None] | None = None) -> AutoResult:
        """Restore an IMAGE batch ``[B, H, W, C]``; returns the image and a report per image.

        ``plan``: None plans from the classifier; a :class:`Plan` (or one per image) runs as
        written (each step still judged and rolled back if it does harm, unless ``rollback`` is
        False). ``upscale``: return the size of the pool's largest scale instead of the input's.
        ``retry``: allow the policy's retry of an automatic plan. ``progress`` is called after every
        model run and inside M3UNet's tiles (it may raise to interrupt).
        """
        image = check_image(image)
        if not 1 <= int(budget) <= MAX_BUDGET:
            raise InputError(f"step budget must be between 1 and {MAX_BUDGET}; got {budget}")
        b, h, w, c = image.shape
        plans = list(plan) if isinstance(plan, (list, tuple)) else [plan] * b
        if len(plans) != b:
            raise InputError(f"got {len(plans)} plans for a batch of {b} images; give one plan or one per image")
        scale = self.pool.max_scale if upscale else 1
        target = (h * scale, w * scale)
        out = torch.empty((b, *target, c), dtype=image.dtype)  # written image by image: flat memory
        reports = []
        ticker = _Progress(progress)
        for i in range(b):
            rgb, report = self._restore_one(to_rgb_float(image[i]), plans[i], int(budget), int(seed) + 104_729 * i,
                                            target, rollback, retry, ticker)
            out[i] = like_input(resize(rgb, target).permute(1, 2, 0), image[i])
            del rgb
            reports.append(report)
        return AutoResult(out, reports)

    # ------------------------------------------------------------------ one image
    def _restore_one(self, x: torch.Tensor, plan: Plan | None, budget: int, seed: int, target: tuple[int, int],
                     rollback: bool, retry: bool, ticker: _Progress) -> tuple[torch.Tensor, AutoReport]:
        """Run the plan; if an automatic plan rolled back a step for a degradation of the first reading
        after keeping others, retry once with the rolled-back degradations first (policy ``retry``)
        and keep the run that removed more of the first reading's degradations (ties: the lower
        remaining score, by at least ``min_gain``; else the first run, in the measured order)."""
        t0 = time.time()
        y, report = self._attempt(x, plan, budget, seed, target, rollback, ticker)
        kept = [t for r in report.steps if r.outcome == "kept" for t in r.tasks]
        rolled = [t for r in report.steps if r.outcome == "rolled back" for t in r.tasks
                  if t in report.detected_labels]
        if (retry and self.policy.retry and plan is None and self.classifier is not None and rollback
                and kept and rolled):
            order = rolled + kept
            y2, report2 = self._attempt(x, None, budget, seed, target, rollback, ticker, order)
            facts = {"kept": kept, "rolled": rolled, "order": order, "first_removed": report.removed,
                     "second_removed": report2.removed, "first_score": report.final_score,
                     "second_score": report2.final_score}
            if (report2.removed, -report2.final_score) > (report.removed, -report.final_score + self.policy.min_gain):
                y, report = y2, report2
                report.retry = Reason("retry_better", facts)
                report.fired("retry")
            else:
                report.retry = Reason("retry_not_better", facts)
        report.seconds = time.time() - t0
        return y, report

    def _attempt(self, x: torch.Tensor, plan: Plan | None, budget: int, seed: int, target: tuple[int, int],
                 rollback: bool, ticker: _Progress, order: list[str] | None = None) -> tuple[torch.Tensor, AutoReport]:
        """One run of the loop (``order``: tasks to put first in an automatic plan)."""
        t0 = time.time()
        min_side = int(getattr(self.classifier, "min_side", 0) or 0)
        if plan is None and (self.classifier is None or guards.is_too_small(x, min_side)):
            return self._restore_unread(x, seed, ticker, t0)
        st = self._begin(x, plan, order)
        ticker.plan(self._runs(st, st.queue[:budget]))
        while (step := self._next_step(st, budget)) is not None:
            index = len(st.report.steps) + 1
            if st.defocus is not None and step is st.defocus[0]:
                st.executed += 1
                self._run_defocus(st, index, step, seed, target, ticker)
                continue
            step = self._narrow(st, step, index)
            if step is _STOP:
                break
            if step is None:
                continue
            self._run_step(st, step, index, seed, target, rollback, budget, ticker)
        return self._finish(st, t0)

    def _begin(self, x: torch.Tensor, plan: Plan | None, order: list[str] | None) -> _State:
        """Read the image (print guard), plan (measured order, then ``order`` first), open the defocus gate."""
        fixed = plan is not None
        print_like = not fixed and self.classifier is not None and guards.looks_like_print(x, self.policy)
        on_print = guards.unread_on_print(x, self.policy, print_like)
        raw = self._read(x)
        leave = () if fixed else tuple(k for k in self.policy.leave_alone if k not in on_print)
        left = [k for k in leave if raw is not None and k in raw.labels]  # read, and left as the user asked
        given = self._hide(raw, on_print + leave)
        faint = () if fixed else guards.faint_readings(given, self.policy)
        lit = () if fixed or faint else guards.lit_readings(given, x, self.policy)
        deep = () if fixed else guards.deep_black_readings(given, x, self.policy)
        later = () if fixed else tuple(k for k in guards.unread_later(given, self.policy)
                                       if k not in on_print + leave + faint + lit + deep)
        unread = on_print + leave + faint + lit + deep + later
        f = self._hide(raw, unread)
        if not fixed:
            plan = plan_from_finding(f, self.table, joint=self._joint_tasks())
        if order:
            rank = {t: i for i, t in enumerate(order)}
            plan = Plan(sorted(plan.steps, key=lambda s: min(rank.get(t, len(rank)) for t in s.tasks)))  # stable
        # the camera-shake deblur, else the kernel-aware (defocus) deblur, covers the blur-like steps
        defocus = (self._motion_step(x, f, print_like) or self._defocus_step(x, f)) if not fixed and f is not None \
            else None
        if defocus is not None:
            rest = [s.only(t for t in s.tasks if t not in self.policy.defocus_labels) for s in plan.steps]
            plan = Plan([defocus[0]] + [s for s in rest if s is not None])
        report = AutoReport(Reading.of(f, ignored=[k for k in on_print if f is not None and k in f.probabilities],
                                       faint=list(faint), lit=list(lit), deep_blacks=list(deep), left=left),
                            degradation_score(f) if f is not None else None, Plan(list(plan.steps)),
                            size=(int(x.shape[-1]), int(x.shape[-2])))
        if left:
            report.fired("leave_alone")
        if on_print and any(k in raw.labels for k in on_print):
            report.fired("print_guard")  # the guard hid a reading that would have been acted on
        if faint:
            report.fired("lowlight_floor")
        if lit:
            report.fired("lowlight_highlights")
        if deep:
            report.fired("haze_black_point")
        if defocus is not None:
            report.fired("motion_gate" if defocus[0].task == "motion" else "defocus_gate")
        brighten = 1.0 if fixed or faint or lit else guards.brightening_share(given, self.policy)
        return _State(x, f, report.score, fixed, unread, list(f.labels) if f is not None else [], report,
                      list(plan.steps), defocus, print_like=print_like, on_print=on_print, later=later,
                      brighten=brighten)

    def _runs(self, st: _State, steps: Sequence[Step]) -> int:
        """Model runs the given steps will take (also checks that every named model exists)."""
        return sum(len(self.pool.candidates(s, st.fixed)) if st.finding is not None else 1 for s in steps)

    def _next_step(self, st: _State, budget: int) -> Step | None:
        """The next step to run, planning the rest when the queue is empty; None (with the reason
        in the report) when the run stops."""
        f = st.finding
        if not st.queue:
            if st.fixed:
                st.report.stopped = Reason("plan_done")
                return None
            todo = guards.pending(f, st.first_labels, st.tried, self.policy)
            left = {t: f.severity[t] for t in todo if t not in st.tried}
            if not todo:
                st.report.stopped = Reason("clean")
                return None
            if not left:
                st.report.stopped = Reason("all_tried", {"labels": list(f.labels)})
                return None
            if set(left) - set(f.labels):
                st.report.fired("hysteresis")
            extra = plan_for(left, self.table, joint=self._joint_tasks(), confidence=f.probabilities).steps
            st.report.plan.steps.extend(extra)
            st.queue = list(extra)
        if st.executed >= budget:
            st.report.stopped = Reason("budget", {"budget": budget,
                                                  "not_run": [t for s in st.queue for t in s.tasks]})
            return None
        return st.queue.pop(0)

    def _narrow(self, st: _State, step: Step, index: int):
        """An automatic plan's step, less what the latest reading (with hysteresis) no longer shows;
        None if nothing of it is left (recorded as skipped); :data:`_STOP` if the image reads clean."""
        if st.fixed:
            return step
        todo = guards.pending(st.finding, st.first_labels, st.tried, self.policy)
        st.read = todo
        if not todo:
            st.report.stopped = Reason("clean")
            return _STOP
        if set(step.tasks) & (set(todo) - set(st.finding.labels)):
            st.report.fired("hysteresis")  # a held degradation keeps this step in the plan
        left = step.only(todo)
        if left is None:
            st.tried.update(step.tasks)
            st.report.steps.append(StepRecord(index, step.tasks, step.strength, "", [], None, "skipped",
                                              st.score, st.score, Reason("no_longer_detected")))
            return None
        if left is not step:  # a joint step of which some tasks are done
            st.tried.update(t for t in step.tasks if t not in left.tasks)
        return left

    def _run_step(self, st: _State, step: Step, index: int, seed: int, target, rollback: bool, budget: int,
                  ticker: _Progress) -> None:
        """Try every candidate for ``step``, judge them, keep the preferred one or roll back."""
        f = st.finding
        st.tried.update(step.tasks)
        read = st.read if not st.fixed else (f.labels if f is not None else [])
        untouched = not any(r.outcome in ("kept", "applied") for r in st.report.steps)
        # A solo specialist (fine-tuned on one degradation of photos) serves a photo as given on which that
        # degradation is the only one read; never print, which the photo-trained classifier misreads.
        alone = (self.policy.solo_specialists and untouched and not st.fixed and not st.print_like
                 and set(read) == {step.task} == set(step.tasks))
        names = self.pool.candidates(step, strict=st.fixed, alone=alone)
        if alone and any(getattr(self.pool.models.get(n), "solo", False) for n in names):
            st.report.fired("solo_specialists")
        if len(step.tasks) > 1 and not st.fixed:
            st.report.fired("joint_tasks")
        if not names:
            st.report.steps.append(StepRecord(index, step.tasks, step.strength, "", [], None, "skipped",
                                              st.score, st.score, Reason("no_model")))
            return
        st.executed += 1
        if f is None:
            names = names[:1]  # nothing to compare candidates with: the first (M3UNet for "auto")
        ticker.plan(len(names) + self._runs(st, st.queue[:max(0, budget - st.executed)]))
        partial = not st.fixed and st.brighten < 1 and tuple(step.tasks) == ("lowlight",)
        if partial:
            st.report.fired("lowlight_ramp")
        results = []
        for k, name in enumerate(names):
            y = self._fit(self._run(name, st.x, step, seed + 7919 * index + k, ticker), st.x.shape[-2:], target)
            if partial:  # against the input at the result's size (a pool model may enlarge)
                base = st.x if y.shape == st.x.shape else resize(st.x, tuple(y.shape[-2:]))
                y = base + st.brighten * (y - base)
            fy = self._reread(st, y)
            e = effect(f, fy, step.tasks, self.policy.side_weight) if fy is not None else None
            results.append((name, y, fy, e))
            ticker.finish_run(f"step {index}: {step.label} with {name}")
        attempts = [Attempt(n, degradation_score(fy) if fy is not None else None, e and round(e.own_drop, 4),
                            e and round(e.side_rise, 4), fy.labels if fy is not None else [])
                    for n, _, fy, e in results]
        text = step.instruction() if any(n.startswith(MODEL_M3UNET) for n in names) else ""
        if f is None:  # no classifier (a given plan): apply the first candidate as written
            st.x = results[0][1]
            st.report.steps.append(StepRecord(index, step.tasks, step.strength, text, attempts, names[0], "applied",
                                              None, None, Reason("not_judged")))
            return
        benefits = [r[3].benefit for r in results]
        chosen = guards.preferred(benefits, self.policy)
        if benefits[chosen] < max(benefits):
            st.report.fired("prefer_margin")
        name, y, fy, e = results[chosen]
        sy = degradation_score(fy)
        rise = guards.overexposure(st.x, y, step.tasks, self.policy)
        if rise is not None:
            st.report.fired("exposure_guard")
        accepted = guards.accept(e, st.fixed, self.policy)
        facts = {"tasks": list(step.tasks), "model": name, "own_change": round(-e.own_drop, 4),
                 "side_change": round(e.side_rise, 4), "count": len(results)}
        if partial:
            facts["share"] = round(st.brighten, 3)
        if (accepted and rise is None) or not rollback:
            why = self._kept_reason(st, step, name, accepted, rise, facts)
            st.report.steps.append(StepRecord(index, step.tasks, step.strength, text, attempts, name, "kept",
                                              st.score, sy, why))
            st.x, st.finding, st.score = y, fy, sy
            return
        if rise is not None:
            why = Reason("overexposed", facts | {"clip_rise": round(rise, 4),
                                                 "limit": self.policy.exposure_clip_rise})
        else:
            why = Reason("did_harm" if st.fixed or e.own_drop < 0 else "no_gain", facts)
        st.report.steps.append(StepRecord(index, step.tasks, step.strength, text, attempts, name, "rolled back",
                                          st.score, st.score, why))

    def _kept_reason(self, st: _State, step: Step, name: str, accepted: bool, rise: float | None,
                     facts: dict) -> Reason:
        if not accepted:
            return Reason("kept_without_rollback", facts)
        if rise is not None:
            return Reason("kept_overexposed", facts | {"clip_rise": round(rise, 4)})
        if getattr(self.pool.models.get(name), "solo", False):
            return Reason("specialist_alone", facts | {"task": step.task})
        if st.fixed:
            return Reason("user_step", facts)
        if len(step.tasks) > 1:
            return Reason("joint_pass", facts)
        return Reason("best_candidate", facts)

    def _finish(self, st: _State, t0: float) -> tuple[torch.Tensor, AutoReport]:
        report, f = st.report, st.finding
        report.final = Reading.of(f, ignored=[k for k in st.on_print if f is not None and k in f.probabilities])
        report.final_score = st.score
        if f is not None:  # still there: read now, or held by hysteresis with no step for it kept
            kept = {t for r in report.steps if r.outcome in ("kept", "applied") for t in r.tasks}
            report.final_labels = guards.pending(f, st.first_labels, kept, self.policy)
        report.seconds = time.time() - t0
        return st.x, report

    # ------------------------------------------------------------------ images the classifier does not read
    def _restore_unread(self, x: torch.Tensor, seed: int, ticker: _Progress, t0: float
                        ) -> tuple[torch.Tensor, AutoReport]:
        """No classifier, or an image under its minimum side: the blur estimator alone may route it
        (policy ``small_image_routes``): kernel deblur, the small-print specialist, or a blind
        M3UNet pass with a noise step's sampler steps when it reads noise; else one blind pass."""
        if self.pool.restorer is None:
            raise ValueError("automatic restore needs a classifier, a plan, or M3UNet in the pool")
        why = "no_classifier" if self.classifier is None else "small"
        report = AutoReport(None, None, Plan([]), size=(int(x.shape[-1]), int(x.shape[-2])))
        est = self._estimator_reading(x) if self.policy.small_image_routes else None
        defocus = self._defocus_step(x, None, est) if est is not None else None
        small = self._small_print(x, est) if est is not None and defocus is None else None
        taken = "deblur" if defocus is not None else "enlarged_print" if small is not None else "blind"
        if self.policy.print_guard and taken not in self.policy.small_print_routes and \
                guards.looks_like_print(x, self.policy):
            report.fired("small_print_routes")
            ticker.plan(1)
            ticker.finish_run("left as it is")
            report.stopped = Reason("print_left", {"why": why, "route": taken})
            report.seconds = time.time() - t0
            return x, report
        route = None
        if defocus is not None:
            step, gate_est = defocus
            route = (step, step.model, Reason("defocus", {"sigma": gate_est.sigma, "noise": gate_est.noise}))
            run = lambda: self.pool.models[step.model].deblur(x, gate_est, seed, self.pool.tile, self._check(ticker, step))  # noqa: E731
        elif small is not None:
            step, m = small
            route = (step, m.name, Reason("enlarged_print", {"sigma": est.sigma, "blocky": est.blocky}))
            run = lambda: m.run(x, step, seed, 1, self.pool.tile, self._check(ticker, step))  # noqa: E731
        if route is not None:
            step, name, reason = route
            report.fired("small_image_routes")
            ticker.plan(1)
            y = run()
            ticker.finish_run("done")
            report.plan = Plan([step])
            report.steps = [StepRecord(1, step.tasks, step.strength, step.text, [], name, "applied", None, None,
                                       reason)]
            report.stopped = Reason("estimator_decided", {"why": why})
            report.seconds = time.time() - t0
            return y, report
        noisy = not self.pool.steps and guards.reads_as_noisy(est, self.policy)
        steps = self.pool.steps or (self.policy.steps_for(["noise"]) if noisy else 1)
        if noisy and steps > 1:
            report.fired("small_image_routes")
        ticker.plan(1)
        y = self.pool.restorer.restore(x.permute(1, 2, 0)[None], text="", steps=steps, seed=seed, tile=self.pool.tile,
                                       progress=lambda p: ticker.within(p.done / p.total, "blind M3UNet pass"))
        ticker.finish_run("done")
        report.stopped = Reason("blind", {"why": why, "steps": steps, "noise": None if est is None else est.noise,
                                          "min_side": int(getattr(self.classifier, "min_side", 0) or 0)})
        report.seconds = time.time() - t0
        return y[0].permute(2, 0, 1), report

    # ------------------------------------------------------------------ tools
    def _joint_tasks(self) -> tuple[str, ...]:
        """The tasks an automatic plan may join into one M3UNet pass (policy ``joint_tasks``), less
        those a user's image model in the pool serves: that model gets its own step to compete in."""
        served = {t for m in self.pool.models.values() if isinstance(m, PoolModel) for t in m.tasks}
        return tuple(t for t in self.policy.joint_tasks if t not in served)

    def _deblur_tool(self):
        return next((m for m in self.pool.models.values()
                     if hasattr(m, "deblur") and getattr(m, "kind", "defocus") == "defocus"), None)

    def _motion_tool(self):
        return next((m for m in self.pool.models.values() if getattr(m, "kind", None) == "motion"), None)

    def _motion_step(self, x: torch.Tensor, f, print_like: bool = False):
        """``(Step, reading)`` for the motion deblur when the motion gate opens (policy ``motion_gate``:
        one of ``motion_labels`` read, or with ``motion_needs_label`` off any image but print, and a
        confident directional kernel in the cepstrum, or a shallower one whose fitted path matches the
        photo's spectrum), else None. The reading is the fitted path (policy ``motion_fit_path``)."""
        tool = self._motion_tool()
        if tool is None or not self.policy.motion_gate or f is None:
            return None
        if self.policy.motion_needs_label:
            if not any(k in f.labels for k in self.policy.motion_labels):
                return None
        elif print_like:
            return None
        est = tool.gate_reading(x, self.policy)
        if est is None:
            return None
        strength = round(motion_severity(est.length), 2)
        return Step("motion", strength, tool.name, est.describe()), est

    def _estimator_reading(self, x: torch.Tensor):
        """The blur estimator's reading of ``x``, or None when the pool has no kernel-aware deblur."""
        tool = self._deblur_tool()
        return tool.reading(x) if tool is not None else None

    def _small_print(self, x: torch.Tensor, est):
        """``(Step, model)`` for the small-print specialist when the estimator reads ``x`` as enlarged print."""
        from .deblur import BLOCKY
        model = next((m for m in self.pool.models.values() if getattr(m, "small", False) and "lowres" in m.tasks),
                     None)
        if model is None or not guards.reads_as_enlarged_print(x, est, BLOCKY, self.policy.defocus_sigma,
                                                               self.policy):
            return None
        strength = round(min(1.0, max(0.0, (est.sigma - 0.6) / 1.2)), 2)
        return Step("lowres", strength, model.name), model

    def _defocus_step(self, x: torch.Tensor, f, reading=None):
        """``(Step, reading)`` for the kernel-aware deblur when the defocus gate opens (policy
        ``defocus_gate``: a blur-like reading and an estimated Gaussian blur it can undo), else None."""
        tool = self._deblur_tool()
        if tool is None or not self.policy.defocus_gate or not guards.reads_blur_like(f, self.policy):
            return None
        est = reading if reading is not None else tool.reading(x)
        if not guards.estimator_reads_defocus(est, tool.would_deconvolve(est), self.policy):
            return None
        strength = round(min(1.0, max(0.0, (est.sigma - 0.6) / 3.0)), 2)  # the blur severity scale
        scale = self.policy.resampled_sigma_scale if guards.reads_resampled(f) else 1.0
        if scale != 1.0:
            est = dataclasses.replace(est, sigma=round(est.sigma * scale, 4), scale=scale)
        return Step("blur", strength, tool.name, est.describe()), est

    def _run_defocus(self, st: _State, index: int, step: Step, seed: int, target, ticker: _Progress) -> None:
        """The kernel-aware deblur step: judged by the blur estimator, not by the classifier (which
        reads deconvolved images poorly), so it is kept."""
        est = st.defocus[1]
        ticker.plan(1 + self._runs(st, st.queue))
        tool = self.pool.models[step.model]
        y = self._fit(tool.deblur(st.x, est, seed + 7919 * index, self.pool.tile, self._check(ticker, step)),
                      st.x.shape[-2:], target)
        fy = self._reread(st, y)
        sy = degradation_score(fy)
        e = effect(st.finding, fy, step.task, self.policy.side_weight)
        attempts = [Attempt(step.model, sy, round(e.own_drop, 4), round(e.side_rise, 4), fy.labels)]
        labels = [k for k in st.finding.labels if k in self.policy.defocus_labels]
        reason = (Reason("motion_kernel", {"labels": labels, "length": est.length, "angle": est.angle,
                                                  "bow": est.bow})
                  if step.task == "motion" else
                  Reason("defocus", {"labels": labels, "sigma": est.sigma, "noise": est.noise,
                                     **({"scale": est.scale} if est.scale != 1.0 else {})}))
        st.report.steps.append(StepRecord(index, list(step.tasks), step.strength, step.text, attempts, step.model,
                                          "kept", st.score, sy, reason))
        st.tried.update(self.policy.defocus_labels)
        st.x, st.finding, st.score = y, fy, sy
        ticker.finish_run(f"step {index}: {step.label} with {step.model}")

    @staticmethod
    def _check(ticker: _Progress, step: Step, name: str | None = None):
        """A pool member's ``check(fraction)``: progress inside the run of ``step`` by ``name`` (its model)."""
        message = f"{step.label} with {name or step.model}"
        return lambda fraction=None: ticker.within(fraction if fraction is not None else ticker.inside, message)

    def _run(self, name: str, x: torch.Tensor, step: Step, seed: int, ticker: _Progress) -> torch.Tensor:
        return self.pool.run(name, x, step, seed, check=self._check(ticker, step, name))

    @staticmethod
    def _fit(y: torch.Tensor, size, target: tuple[int, int]) -> torch.Tensor:
        """Back to the current size, or (asked for the larger size) up to ``target`` at most."""
        size = tuple(size)
        if tuple(y.shape[-2:]) == size:
            return y
        if y.shape[-2] > size[0] and size != tuple(target):
            return resize(y, target)
        return resize(y, size)
