"""How much degradation a reading shows, and what a candidate did to it (the step judge's measure)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


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
    side_weight: float = 0.0

    @property
    def benefit(self) -> float:
        return self.own_drop - self.side_weight * self.side_rise


def effect(before, after, task: str | Sequence[str], side_weight: float = 0.0) -> Effect:
    """Compare two readings for a step removing ``task`` (or the tasks of a joint step: their drops
    add up); side effects weigh ``side_weight``."""
    own = {task} if isinstance(task, str) else set(task)
    others = lambda f: sum(label_score(f, k) for k in f.labels if k not in own)  # noqa: E731
    return Effect(sum(label_score(before, k) - label_score(after, k) for k in own), others(after) - others(before),
                  side_weight)
