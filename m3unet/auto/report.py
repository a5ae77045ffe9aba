"""The automatic restore's report in words an artist understands.

One renderer for every front end (command line, ComfyUI's Preview as Text / Markdown, the JSON's
readers): what was found, what was done and why, what is left. Each section is a paragraph or a
list, so Markdown keeps the lines apart. It reads the structured decisions of
:mod:`m3unet.auto.decisions` and knows nothing of the code that made them.
"""
from __future__ import annotations

from typing import Any, Callable

from ..core.degradations import level

NAMES = {"noise": "noise", "blur": "blur", "motion": "motion blur", "jpeg": "JPEG artefacts",
         "lowres": "low resolution", "lowlight": "darkness (low light)", "haze": "haze"}
ACTIONS = {"noise": "remove the noise", "blur": "sharpen the blur", "motion": "undo the motion blur",
           "jpeg": "remove the JPEG artefacts", "lowres": "restore lost detail", "lowlight": "brighten",
           "haze": "remove the haze"}
MODELS = {"m3unet": "M3UNet", "kernel-deblur": "the blur remover (deconvolution + M3UNet)",
          "motion-deblur": "the camera-shake remover (deconvolution + M3UNet)",
          "m3unet-jpeg": "the JPEG specialist", "m3unet-noise": "the noise specialist",
          "m3unet-smallprint": "the small-print specialist"}


def name(task: str) -> str:
    return NAMES.get(task, task)


def names(tasks) -> str:
    items = [name(t) for t in tasks]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else "nothing"


def model(m: str | None) -> str:
    return MODELS.get(m or "", m or "-")


def certainty(p: float) -> str:
    return "clearly" if p >= 0.9 else "probably" if p >= 0.7 else "possibly"


def reading(r) -> str:
    """``JPEG artefacts (moderate, clearly), noise (light, probably)`` or ``nothing wrong found``."""
    if r is None:
        return "not read (no degradation classifier)"
    parts = [f"{name(k)} ({level(s)}, {certainty(p)})" for k, (p, s) in r.labels.items()]
    left = getattr(r, "left", None)
    text = ", ".join(parts) if parts else "nothing else wrong found" if left else "nothing wrong found"
    if left:
        text += f"; {names(left)} {'was' if len(left) == 1 else 'were'} read too, and left alone as asked"
    if r.ignored:
        text += f"; it looks like print, so the {names(r.ignored)} readings were ignored (they misjudge paper and letters)"
    if getattr(r, "faint", None):
        text += "; it is a little dark, which a dark scene also is, so it was not brightened"
    if getattr(r, "lit", None):
        text += ("; it is dark, but its highlights are brighter than an under-exposed photo's, as a dark scene's are, "
                 "so it was not brightened")
    if getattr(r, "deep_blacks", None):
        text += ("; it looks hazy, but it keeps deep blacks, which haze would have lifted (a clear, low-contrast "
                 "scene), so it was not dehazed")
    return text


def _pct(v: float) -> str:
    return f"{100 * v:.0f} %"


# Reason code -> sentence, from the reason's facts. Every code the restorer emits is here.
REASONS: dict[str, Callable[[dict[str, Any]], str]] = {
    # kept
    "best_candidate": lambda f: (f"of {f['count']} candidates it removed the most (or nearly, and was tried first)"
                                 if f.get("count", 1) > 1 else "it lowered what it was meant to remove"),
    "joint_pass": lambda f: f"one pass removed {names(f['tasks'])} together",
    "specialist_alone": lambda f: f"a {name(f['task'])} specialist, used because {name(f['task'])} is the only "
                                  "problem found",
    "kept_without_rollback": lambda f: "kept although it did not help (roll-back is off)",
    "kept_overexposed": lambda f: f"kept although it turned {_pct(f['clip_rise'])} more of the picture pure white "
                                  "(roll-back is off)",
    "user_step": lambda f: "your plan's step; it did no harm",
    # rolled back
    "no_gain": lambda f: (f"it did not remove enough of {names(f['tasks'])} to be worth keeping, so the image was "
                          "left as it was"),
    "did_harm": lambda f: f"it made {names(f['tasks'])} worse, so the image was left as it was",
    "overexposed": lambda f: (f"brightening turned {_pct(f['clip_rise'])} more of the picture pure white: the photo "
                              "was not dark, so it was undone"),
    # skipped / applied
    "no_longer_detected": lambda f: "no longer found after the earlier steps",
    "no_model": lambda f: "no model in the pool can do it",
    "not_judged": lambda f: "applied as planned (no classifier to judge it)",
    "defocus": lambda f: (f"the blur looked like an out-of-focus blur of {f['sigma']:.1f} px: it was deconvolved, then "
                          "cleaned up by M3UNet" if f.get("scale", 1.0) == 1.0 else
                          f"the image looked down-sampled and brought back to size: it was deconvolved by a "
                          f"{f['sigma']:.1f} px blur ({f['scale']:g} of the estimate, so as not to sharpen past what "
                          "the resampling kept), then cleaned up by M3UNet"),
    "motion_kernel": lambda f: (f"the blur looked like camera shake of {f['length']:.0f} px"
                                f"{' along a curved path' if f.get('bow') else ''}: it was deconvolved, "
                                "then cleaned up by M3UNet"),
    "enlarged_print": lambda f: "it looks like small print that was enlarged: the small-print specialist restored it",
    # why it stopped
    "clean": lambda f: "nothing wrong is found any more",
    "all_tried": lambda f: f"{names(f['labels'])} may remain, but every way to remove it was tried",
    "budget": lambda f: f"the step budget ({f['budget']}) was used up; not done: {names(f['not_run'])}",
    "plan_done": lambda f: "the plan is done",
    "blind": lambda f: ("the image is too small to judge reliably" if f.get("why") == "small"
                        else "no degradation classifier is installed") + (
                            f"; restored with one general M3UNet pass ({f['steps']} sampler steps)"),
    "print_left": lambda f: ("the image is too small to judge reliably and looks like print, which that restore "
                             "does not read better: left as it is"),
    "estimator_decided": lambda f: "the image is too small to judge reliably; the blur estimate decided alone",
    # retries
    "retry_better": lambda f: (f"the usual order left {names(f['rolled'])}; trying it first did better, so that "
                               "result is used"),
    "retry_not_better": lambda f: (f"the usual order left {names(f['rolled'])}; trying it first did not do better, so "
                                   "the first result is used"),
}


def reason(r) -> str:
    text = REASONS[r.code](r.facts)
    if "share" in r.facts:  # the low-light ramp scaled a brightening step
        text += (f"; the image read as barely dark (low light just over the floor), so {_pct(r.facts['share'])} "
                 "of the brightening was applied")
    return text


def render(report) -> str:
    """One image's report: found, plan, steps, result, why it stopped."""
    if report.first is None and report.stopped.facts.get("why") == "small":
        out = ["**Found:** not read: the image is too small for the classifier to judge reliably."]
    else:
        out = [f"**Found:** {reading(report.first)}."]
    if report.plan.steps:
        plan = "; ".join(f"{i}. {' and '.join(ACTIONS.get(t, t) for t in s.tasks)}"
                         + (f" ({model(s.model)})" if s.model not in ("auto",) else "")
                         for i, s in enumerate(report.plan.steps, 1))
        out.append(f"**Plan:** {plan}.")
    if report.steps:
        lines = []
        for r in report.steps:
            head = f"- Step {r.index}, {names(r.tasks)}: {r.outcome}"
            if r.chosen and r.outcome in ("kept", "applied"):
                head += f" ({model(r.chosen)})"
            why = reason(r.reason)
            lines.append(f"{head}. {why[:1].upper()}{why[1:]}.")
            if r.text and r.chosen and r.chosen.startswith("m3unet") and r.outcome != "skipped":
                lines.append(f"  M3UNet was told: \"{r.text}\"")
        out.append("\n".join(lines))
    if report.retry is not None:
        out.append(f"**Second try:** {reason(report.retry)}.")
    if report.final is not None:
        out.append(f"**Now:** {reading(report.final)}.")
    out.append(f"**Stopped:** {reason(report.stopped)} ({report.seconds:.1f} s).")
    return "\n\n".join(out)


def render_result(reports) -> str:
    """Every image's report; a batch gets a heading per image."""
    if len(reports) == 1:
        return render(reports[0])
    return "\n\n".join(f"### Image {i + 1}\n\n{render(r)}" for i, r in enumerate(reports))
