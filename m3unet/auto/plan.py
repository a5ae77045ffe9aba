"""Restoration plans: which degradations to remove, in which order, with which model.

A :class:`Plan` is an ordered list of :class:`Step` s ``{task, strength, model, text}``:

* ``task``: the degradation the step removes (a classifier label, :data:`TASKS`);
* ``strength``: its severity in [0, 1] as detected (it sets the level in M3UNet's restoration
  text: light / moderate / heavy);
* ``model``: ``"auto"`` (try every pool model serving the task and keep the best), ``"m3unet"``
  or the name of one pool model;
* ``text``: what M3UNet is told for this step (empty: generated from task and strength by
  :func:`m3unet.core.text.describe`, the phrasing the model was trained on);
* ``also`` (optional): ``{task: strength}`` of further degradations removed by the same pass (a
  *joint* step, as the paper restores: one M3UNet pass told about every degradation at once).

The plan is JSON (``{"version": 1, "steps": [...]}``) so a user can read it in a workflow, edit
it and feed it back; :meth:`Plan.from_json` validates edited JSON with errors naming the step
and the field.

The automatic plan removes the degradations of the camera and the file (:attr:`m3unet.auto.policy.RestorePolicy.joint_tasks`:
noise, blur, motion, JPEG, low resolution) in one joint step when it reads two or more of them:
measured on ``eval --auto``'s 30 validation mixes, one M3UNet pass told about all of
them matched or beat the best fixed order of single-task passes on every such mix type (e.g.
JPEG + low resolution + noise 24.83 vs 24.35 dB, blur + JPEG + noise 24.67 vs 24.50), while
haze and low light stay steps of their own (a joint pass told of low light and noise lost
1.3 dB). From a reading, the joint step's tasks are sized by their expected severity (probability
x severity), so a doubtful one is told as lighter (chosen on other validation mixes than
``eval --auto``'s). ``eval --rules`` re-checks the joint step on the validation suite (docs/rules.md).

The ORDER of the steps is learned from measurements, not taste (RestoreAgent / AgenticIR make the
same point: the order of restoration steps matters and depends on the degradations).
``python -m m3unet plan-orders`` (:mod:`m3unet.evaluation.orders`) restores validation photos with mixed
degradations in every order of single-task M3UNet passes and records, for every pair of tasks,
how many dB doing ``a`` before ``b`` gains over ``b`` before ``a``. :func:`order_tasks` picks the
order that maximises the summed pairwise gains (a Kemeny-style ranking of the measured
preferences); pairs never measured fall back to undoing the camera pipeline in reverse.
"""
from __future__ import annotations

import functools
import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .policy import DEFAULT_POLICY
from ..core.degradations import LABELS, ORDER, Degradation, level

TASKS = LABELS  # a plan's tasks are the classifier's labels
MODEL_AUTO = "auto"
MODEL_M3UNET = "m3unet"
PLAN_VERSION = 1
MAX_STEPS = 32
STEP_KEYS = ("task", "strength", "model", "text", "also")
# The measured order table the planner reads (written by ``python -m m3unet plan-orders``).
ORDER_TABLE = Path(__file__).resolve().parent / "plan_orders.json"
# Fallback for task pairs with no measurement: undo the camera pipeline of
# m3unet.training.synthesis.apply in reverse (JPEG was applied last, so it is removed first).
FALLBACK_ORDER = tuple(sorted(TASKS, key=lambda t: -ORDER[t]))


class PlanError(ValueError):
    """An invalid plan (bad JSON, unknown task or model, out-of-range strength); names the step."""


@dataclass
class Step:
    """One restoration step."""
    task: str
    strength: float = 0.5
    model: str = MODEL_AUTO
    text: str = ""
    also: dict[str, float] = field(default_factory=dict)  # further tasks of a joint step: {task: strength}

    @property
    def tasks(self) -> list[str]:
        """The degradations this step removes: ``task``, then those of ``also``."""
        return [self.task] + [t for t in self.also if t != self.task]

    def strengths(self) -> dict[str, float]:
        return {self.task: self.strength} | {t: s for t, s in self.also.items() if t != self.task}

    def instruction(self) -> str:
        """The restoration text M3UNet gets: ``text``, or the canonical phrasing of the task(s)."""
        from ..core.text import describe
        return self.text.strip() or describe([Degradation(t, s) for t, s in self.strengths().items()])

    def only(self, tasks: Iterable[str]) -> "Step | None":
        """This step restricted to ``tasks`` (None if it removes none of them); the text is dropped
        when the tasks change, so it is generated again."""
        wanted = set(tasks)  # once: ``tasks`` may be a generator
        keep = {t: s for t, s in self.strengths().items() if t in wanted}
        if not keep:
            return None
        if list(keep) == self.tasks:
            return self
        first = next(iter(keep))
        return Step(first, keep.pop(first), self.model, "", keep)

    @property
    def label(self) -> str:
        """The task(s) as reports name them: ``noise``, or a joint step's ``noise+jpeg``."""
        return "+".join(self.tasks)

    def describe(self) -> str:
        return " + ".join(f"{t} ({level(s)}, {s:.2f})" for t, s in self.strengths().items()) + f" with {self.model}"

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["also"]:
            del d["also"]  # single-task steps keep the plan JSON of earlier versions
        return d


@dataclass
class Plan:
    """An ordered list of steps; JSON round trip with validation."""
    steps: list[Step] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def tasks(self) -> list[str]:
        return [t for s in self.steps for t in s.tasks]

    def to_dict(self) -> dict:
        return {"version": PLAN_VERSION, "steps": [s.to_dict() for s in self.steps]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: Any) -> "Plan":
        """Validate a parsed plan: ``{"steps": [...]}`` or a bare list of steps."""
        if isinstance(data, dict):
            unknown = set(data) - {"version", "steps"}
            if unknown:
                raise PlanError(f"plan has unknown key(s) {sorted(unknown)}; a plan is "
                                '{"version": 1, "steps": [{"task": ..., "strength": ..., "model": ..., "text": ...}]}')
            if data.get("version", PLAN_VERSION) != PLAN_VERSION:
                raise PlanError(f"plan version {data.get('version')!r} is not supported; expected {PLAN_VERSION}")
            if "steps" not in data:
                raise PlanError('plan has no "steps" list; write {"steps": [{"task": "noise"}]} '
                                "(or leave the plan empty to plan automatically)")
            data = data["steps"]
        if not isinstance(data, list):
            raise PlanError(f'plan must be an object {{"steps": [...]}} or a list of steps; got {type(data).__name__}')
        if len(data) > MAX_STEPS:
            raise PlanError(f"plan has {len(data)} steps; at most {MAX_STEPS} are allowed")
        return cls([_parse_step(i, s) for i, s in enumerate(data, 1)])

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        """Parse and validate plan JSON (as shown in a workflow and edited by a user)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise PlanError(f"plan is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); fix it, "
                            "or leave the plan empty to plan automatically") from e
        return cls.from_dict(data)

    def summary(self) -> str:
        if not self.steps:
            return "nothing to do"
        return " -> ".join(s.describe() for s in self.steps)


def _parse_step(i: int, s: Any) -> Step:
    where = f"plan step {i}"
    if isinstance(s, str):  # shorthand: "noise"
        s = {"task": s}
    if not isinstance(s, dict):
        raise PlanError(f"{where} must be an object like {{\"task\": \"noise\"}}; got {type(s).__name__}")
    unknown = set(s) - set(STEP_KEYS)
    if unknown:
        raise PlanError(f"{where} has unknown key(s) {sorted(unknown)}; allowed keys: {', '.join(STEP_KEYS)}")
    task = s.get("task")
    if task not in TASKS:
        raise PlanError(f"{where}: unknown task {task!r}; choose one of {', '.join(TASKS)}")
    strength = s.get("strength", 0.5)
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
        raise PlanError(f"{where} ({task}): strength must be a number between 0 (light) and 1 (heavy); got {strength!r}")
    model = s.get("model", MODEL_AUTO)
    if not isinstance(model, str) or not model.strip():
        raise PlanError(f"{where} ({task}): model must be a name: 'auto' (try the pool), 'm3unet' or a pool "
                        f"model's name; got {model!r}")
    text = s.get("text", "")
    if not isinstance(text, str):
        raise PlanError(f"{where} ({task}): text must be a string; got {type(text).__name__}")
    also = s.get("also", {})
    if isinstance(also, list):  # shorthand: ["jpeg", "noise"] at the default strength
        also = {t: 0.5 for t in also} if all(isinstance(t, str) for t in also) else None
    if not isinstance(also, dict):
        raise PlanError(f'{where} ({task}): also must map further tasks to strengths, e.g. {{"jpeg": 0.5}}; '
                        f"got {s.get('also')!r}")
    for t, v in also.items():
        if t not in TASKS or t == task:
            raise PlanError(f"{where} ({task}): also names {t!r}; choose other tasks of {', '.join(TASKS)}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise PlanError(f"{where} ({task}): the strength of {t} in also must be a number between 0 and 1; "
                            f"got {v!r}")
    return Step(task, float(strength), model.strip(), text, {t: float(v) for t, v in also.items()})


# ---------------------------------------------------------------------------- the measured order
@dataclass
class OrderTable:
    """Pairwise order preferences: ``margin[(a, b)]`` = mean dB gained by doing ``a`` before ``b``."""
    margin: dict[tuple[str, str], float] = field(default_factory=dict)
    source: dict = field(default_factory=dict)

    def prefer(self, a: str, b: str) -> float | None:
        """dB gained by ``a`` before ``b`` (None if never measured)."""
        if (a, b) in self.margin:
            return self.margin[(a, b)]
        if (b, a) in self.margin:
            return -self.margin[(b, a)]
        return None

    @classmethod
    def from_dict(cls, data: Mapping) -> "OrderTable":
        margin = {}
        for key, v in data.get("pairwise", {}).items():
            a, b = key.split(">")
            margin[(a, b)] = float(v["margin_db"])
        return cls(margin, {k: v for k, v in data.items() if k not in ("pairwise", "sets", "instances")})


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> OrderTable:
    return OrderTable.from_dict(json.loads(Path(path).read_text()))


def load_order_table(path: Path | str | None = None) -> OrderTable:
    """The measured order table (default: the shipped :data:`ORDER_TABLE`; empty if missing)."""
    p = Path(path) if path else ORDER_TABLE
    if not p.is_file():
        if path:
            raise PlanError(f"order table {p} not found; run `python -m m3unet plan-orders` to measure it")
        return OrderTable()
    return _load(str(p), p.stat().st_mtime)


def order_tasks(tasks: Iterable[str], table: OrderTable | None = None) -> list[str]:
    """Order tasks to maximise the summed measured pairwise gains (ties: camera pipeline reversed)."""
    table = load_order_table() if table is None else table
    tasks = sorted(set(tasks), key=FALLBACK_ORDER.index)
    if len(tasks) > 8:  # 8! = 40320 orders is still quick; more cannot happen with 7 labels
        raise PlanError(f"too many tasks to order: {tasks}")

    def gain(a: str, b: str) -> float:
        m = table.prefer(a, b)
        # Unmeasured pairs: a tiny preference for the fallback order, so it only breaks ties.
        return m if m is not None else (1e-3 if FALLBACK_ORDER.index(a) < FALLBACK_ORDER.index(b) else -1e-3)

    best, best_score = tasks, float("-inf")
    for perm in itertools.permutations(tasks):  # first maximum wins: the fallback order on ties
        score = sum(gain(perm[i], perm[j]) for i in range(len(perm)) for j in range(i + 1, len(perm)))
        if score > best_score + 1e-9:
            best, best_score = list(perm), score
    return best


def plan_for(severities: Mapping[str, float], table: OrderTable | None = None, model: str = MODEL_AUTO,
             joint: Iterable[str] = DEFAULT_POLICY.joint_tasks, confidence: Mapping[str, float] | None = None) -> Plan:
    """A plan removing the degradations ``{task: severity}`` in the measured best order; two or
    more of ``joint`` become one joint step, where the first of them would be. ``confidence``
    (a reading's probabilities): a joint step's tasks are sized by their expected severity,
    probability x severity, so the pass is told less of a doubtful one."""
    unknown = set(severities) - set(TASKS)
    if unknown:
        raise PlanError(f"unknown task(s) {sorted(unknown)}; choose from {', '.join(TASKS)}")
    order = order_tasks(severities, table)
    strength = {t: round(float(min(max(severities[t], 0.0), 1.0)), 3) for t in order}
    joint = set(joint)
    merged = [t for t in order if t in joint]
    steps = []
    for task in order:
        if len(merged) > 1 and task in merged:
            if task != merged[0]:
                continue
            sized = {t: round(strength[t] * float((confidence or {}).get(t, 1.0)), 3) for t in merged}
            step = Step(task, sized[task], model, "", {t: sized[t] for t in merged[1:]})
        else:
            step = Step(task, strength[task], model)
        step.text = step.instruction()
        steps.append(step)
    return Plan(steps)


def plan_from_finding(finding, table: OrderTable | None = None, model: str = MODEL_AUTO,
                      joint: Iterable[str] = DEFAULT_POLICY.joint_tasks) -> Plan:
    """The plan for a classifier :class:`~m3unet.auto.classifier.Finding` (its detected labels); two or
    more of ``joint`` share one joint step."""
    return plan_for({k: finding.severity[k] for k in finding.labels}, table, model, joint, finding.probabilities)


def parse_plans(text: str, batch: int | None = None) -> Plan | list[Plan] | None:
    """A plan override as typed into a workflow: empty -> None (plan automatically); one plan (applies
    to every image); or a JSON list of plans, one per image of a batch (as the node outputs them)."""
    if not text or not text.strip():
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise PlanError(f"plan is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); fix it, "
                        "or leave the plan empty to plan automatically") from e
    if isinstance(data, list) and data and all(isinstance(p, dict) and "steps" in p for p in data):
        plans = [Plan.from_dict(p) for p in data]
        if batch is not None and len(plans) != batch:
            raise PlanError(f"plan is a list of {len(plans)} plans but the batch has {batch} images; give one "
                            "plan for all images or one per image")
        return plans
    return Plan.from_dict(data)
