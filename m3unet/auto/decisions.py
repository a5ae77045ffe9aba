"""What the automatic restore decided, as data: readings, steps, candidates, reasons, why it stopped.

The restorer fills these in; :mod:`m3unet.auto.report` turns them into words for people, and
``to_dict`` into JSON (``restore --report-json``). A :class:`Reason` is a code and its facts
(numbers, names), never prose.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .plan import Plan


@dataclass
class Reason:
    """Why something was decided: a code (:data:`m3unet.auto.report.REASONS`) and its facts."""
    code: str
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Reading:
    """A classifier reading, as the report keeps it: probability and severity of each detected label."""
    labels: dict[str, tuple[float, float]] = field(default_factory=dict)  # label -> (probability, severity)
    note: str = ""  # "print": the print guard ignored some readings; "unreliable": under the minimum side
    ignored: list[str] = field(default_factory=list)
    faint: list[str] = field(default_factory=list)  # read too faintly to act on (the policy's low-light floor)
    lit: list[str] = field(default_factory=list)  # read, but the highlights are too bright for under-exposure (a dark scene)
    deep_blacks: list[str] = field(default_factory=list)  # read, but the image keeps deep blacks (no haze veil)
    left: list[str] = field(default_factory=list)  # read, but the user asked to leave them alone (policy leave_alone)

    @classmethod
    def of(cls, finding, labels: list[str] | None = None, ignored=(), faint=(), lit=(),
           deep_blacks=(), left=()) -> "Reading | None":
        if finding is None:
            return None
        keep = finding.labels if labels is None else labels
        return cls({k: (round(float(finding.probabilities.get(k, 0.0)), 4), round(float(finding.severity.get(k, 0.0)), 4))
                    for k in keep}, "print" if ignored else "", list(ignored), list(faint), list(lit),
                   list(deep_blacks), list(left))


@dataclass
class AutoProgress:
    """What the progress callback receives: work done / planned (in model runs, with fractions
    inside a run), and what is running."""
    done: float
    total: float
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
    tasks: list[str]
    strength: float
    text: str                    # the restoration text M3UNet was given ("" if it did not run)
    attempts: list[Attempt]
    chosen: str | None
    outcome: str                 # "kept", "rolled back", "skipped", "applied" (no classifier to judge it)
    score_before: float | None
    score_after: float | None
    reason: Reason

    @property
    def task(self) -> str:
        """The step's label: its task, or a joint step's tasks joined by "+" ("jpeg+noise")."""
        return "+".join(self.tasks)


@dataclass
class AutoReport:
    """The report of one image: first reading, plan, steps, last reading and why it stopped."""
    first: Reading | None
    score: float | None
    plan: Plan
    steps: list[StepRecord] = field(default_factory=list)
    final: Reading | None = None
    final_score: float | None = None
    stopped: Reason = field(default_factory=lambda: Reason("plan_done"))
    seconds: float = 0.0
    retry: Reason | None = None  # an automatic plan retried in another order, and which run was kept
    size: tuple[int, int] = (0, 0)  # width, height of the image read
    final_labels: list[str] = field(default_factory=list)  # still there: read, or held by hysteresis
    rules: list[str] = field(default_factory=list)  # the policy's rules that changed what was done (their names)

    def fired(self, rule: str) -> None:
        if rule not in self.rules:
            self.rules.append(rule)

    @property
    def detected_labels(self) -> list[str]:
        return list(self.first.labels) if self.first is not None else []

    @property
    def removed(self) -> int:
        """How many of the first reading's degradations the last reading no longer shows."""
        return len(set(self.detected_labels) - set(self.final_labels))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["plan"] = self.plan.to_dict()
        return d


@dataclass
class AutoResult:
    image: torch.Tensor          # [B, H, W, C], the input's dtype and channels
    reports: list[AutoReport]

    def text(self) -> str:
        """The reports in words (Markdown-friendly), one section per image of a batch."""
        from .report import render_result
        return render_result(self.reports)

    def plan_json(self) -> str:
        """The plan(s) that ran, as editable JSON (one plan, or a list for a batch)."""
        if len(self.reports) == 1:
            return self.reports[0].plan.to_json()
        return json.dumps([r.plan.to_dict() for r in self.reports], indent=1)
