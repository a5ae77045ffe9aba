"""The restore policy (every threshold in one object), its guards one by one, the report renderer and
the factory that builds the automatic restorer."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from m3unet.auto import guards
from m3unet.auto.classifier import LABELS, Finding
from m3unet.auto.decisions import AutoReport, Reading, Reason, StepRecord
from m3unet.auto.deblur import BlurEstimate
from m3unet.auto.plan import Plan, Step
from m3unet.auto.policy import DEFAULT_POLICY, PolicyError, RestorePolicy, policy_from
from m3unet.auto.report import REASONS, render
from m3unet.auto.scoring import Effect

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parent.parent


def finding(**labels: tuple[float, float]) -> Finding:
    return Finding({k: labels.get(k, (0.01, 0.0))[0] for k in LABELS}, {k: labels.get(k, (0.01, 0.0))[1] for k in LABELS})


# ---------------------------------------------------------------------------- the policy object
def test_every_entry_says_what_it_decides_and_where_its_value_comes_from():
    for f in dataclasses.fields(RestorePolicy):
        assert len(f.metadata.get("decides", "")) > 15, f.name
        assert len(f.metadata.get("origin", "")) > 15, f.name
    table = DEFAULT_POLICY.table()
    assert all(f"`{k}`" in table for k in RestorePolicy.keys())


def test_overrides_are_typed_and_unknown_keys_are_clear_errors():
    p = policy_from(["print_guard=false", "min_gain=0.1", "print_unread=haze", 'task_steps={"noise": 3}'])
    assert p.print_guard is False and p.min_gain == 0.1 and p.print_unread == ("haze",)
    assert p.task_steps == {"noise": 3} and p.steps_for(["noise", "blur"]) == 3 and p.steps_for(["blur"]) == 1
    assert DEFAULT_POLICY.print_guard is True  # the default is untouched
    with pytest.raises(PolicyError, match="unknown restore policy entry 'min_gian'"):
        policy_from(["min_gian=0.1"])
    with pytest.raises(PolicyError, match="'print_guard' takes a bool"):
        policy_from(["print_guard=maybe"])
    with pytest.raises(PolicyError, match="write KEY=VALUE"):
        policy_from(["print_guard"])
    offsets = policy_from(['act_offsets={"noise": 1, "jpeg": -0.5}']).act_offsets
    assert offsets == {"noise": 1.0, "jpeg": -0.5} and all(isinstance(v, float) for v in offsets.values())
    with pytest.raises(PolicyError, match="nois unknown; the labels are"):
        policy_from(['act_offsets={"nois": 1}'])
    with pytest.raises(PolicyError, match="'act_offsets' takes a dict"):
        policy_from(["act_offsets=noise"])


def test_docs_policy_table_is_the_policy():
    """docs/policy.md is generated from the object (`python -m m3unet policy --md docs/policy.md`)."""
    assert DEFAULT_POLICY.table() in (REPO / "docs" / "policy.md").read_text()


# ---------------------------------------------------------------------------- guards, one by one
def test_accept_needs_a_gain_when_automatic_and_no_harm_when_planned_by_the_user():
    assert guards.accept(Effect(0.06, 0.0), False) and not guards.accept(Effect(0.04, 0.0), False)
    assert guards.accept(Effect(-0.04, 0.0), True) and not guards.accept(Effect(-0.06, 0.0), True)
    assert not guards.accept(Effect(0.5, 1.0, side_weight=1.0), False)  # side effects outweigh
    assert guards.accept(Effect(0.04, 0.0), False, RestorePolicy(min_gain=0.01))


def test_preferred_keeps_the_first_candidate_within_the_margin():
    margin = RestorePolicy(prefer_margin=0.05)
    assert guards.preferred([0.80, 0.84], margin) == 0
    assert guards.preferred([0.80, 0.90], margin) == 1
    assert guards.preferred([0.80, 0.84]) == 1  # the shipped policy: the best wins
    assert guards.preferred([0.80, 0.80]) == 0  # ties: the first


def test_pending_holds_a_first_reading_by_hysteresis_until_tried():
    f = finding(noise=(0.9, 0.5), lowlight=(0.3, 0.6))
    assert guards.pending(f, ["noise", "lowlight"], set()) == ["noise", "lowlight"]
    assert guards.pending(f, ["noise", "lowlight"], {"lowlight"}) == ["noise"]
    assert guards.pending(f, ["noise", "lowlight"], set(), RestorePolicy(keep_threshold=0.35)) == ["noise"]


def test_overexposure_only_judges_brightening_steps():
    dark, bright = torch.full((3, 8, 8), 0.2), torch.full((3, 8, 8), 0.2)
    bright[:, :4] = 1.0
    on = RestorePolicy(exposure_guard=True)
    assert guards.overexposure(dark, bright, ["lowlight"], on) == pytest.approx(0.5)
    assert guards.overexposure(dark, bright, ["noise"], on) is None
    assert guards.overexposure(dark, bright, ["lowlight"]) is None  # off in the shipped policy
    assert guards.overexposure(dark, bright, ["lowlight"], on.replace(exposure_clip_rise=0.6)) is None


def test_print_guard_ignores_its_readings_only_on_print():
    page = torch.ones(3, 40, 200)
    page[:, 15:25, 20:180:6] = 0.05  # dark strokes on paper
    photo = torch.linspace(0, 1, 40 * 200).reshape(1, 40, 200).expand(3, -1, -1)
    assert guards.looks_like_print(page) and not guards.looks_like_print(photo)
    assert guards.unread_on_print(page) == ("haze", "lowlight", "lowres") and guards.unread_on_print(photo) == ()
    assert guards.unread_on_print(page, RestorePolicy(print_guard=False)) == ()
    assert not guards.looks_like_print(0.8 + 0.1 * page)  # faint ink: too little contrast


def test_defocus_gate_needs_a_blur_like_reading_and_an_undoable_blur():
    assert guards.reads_blur_like(finding(lowres=(0.9, 0.3))) and not guards.reads_blur_like(finding(noise=(0.9, 0.3)))
    assert guards.reads_blur_like(None)
    assert guards.estimator_reads_defocus(BlurEstimate(1.5, 2.0), True)
    assert not guards.estimator_reads_defocus(BlurEstimate(1.0, 2.0), True)
    assert not guards.estimator_reads_defocus(BlurEstimate(2.0, 2.0), False)


def test_small_image_routes():
    assert guards.is_too_small(torch.zeros(3, 64, 200), 96) and not guards.is_too_small(torch.zeros(3, 96, 96), 96)
    assert guards.reads_as_noisy(BlurEstimate(0.5, 7.0)) and not guards.reads_as_noisy(BlurEstimate(0.5, 5.0))
    assert not guards.reads_as_noisy(None)
    page = torch.ones(3, 40, 200)
    page[:, 15:25, 20:180:6] = 0.05
    assert guards.reads_as_enlarged_print(page, BlurEstimate(1.5, 0.0, 1.3), 1.2, 1.2)
    assert not guards.reads_as_enlarged_print(page, BlurEstimate(1.5, 0.0, 1.6), 1.2, 1.2)  # JPEG blocks
    assert not guards.reads_as_enlarged_print(page, BlurEstimate(1.5, 9.0, 1.3), 1.2, 1.2)  # noisy


# ---------------------------------------------------------------------------- the report, in words
def test_every_reason_renders_in_words_without_internal_names():
    facts = {"count": 2, "tasks": ["noise", "jpeg"], "task": "jpeg", "clip_rise": 0.12, "sigma": 2.0, "noise": 3.0,
             "labels": ["lowres"], "budget": 4, "not_run": ["haze"], "why": "small", "steps": 2, "rolled": ["lowlight"],
             "blocky": 1.3, "model": "m3unet", "own_change": -0.4, "side_change": 0.0, "limit": 0.05, "length": 12.0, "angle": 30.0}
    for code, sentence in REASONS.items():
        text = sentence(facts)
        assert text and "_" not in text and "m3unet." not in text and "score" not in text, (code, text)


def test_the_report_reads_as_markdown_sections():
    f = finding(jpeg=(1.0, 0.57), noise=(0.8, 0.24))
    rep = AutoReport(Reading.of(f), 1.28, Plan([Step("noise", 0.2, also={"jpeg": 0.57})]))
    rep.steps.append(StepRecord(1, ["noise", "jpeg"], 0.2, "remove the noise", [], "m3unet", "kept", 1.28, 0.1,
                                Reason("joint_pass", {"tasks": ["noise", "jpeg"]})))
    rep.final, rep.stopped = Reading.of(finding()), Reason("clean")
    text = render(rep)
    assert text.startswith("**Found:** JPEG artefacts (moderate, clearly), noise (light, probably).")
    assert "\n\n- Step 1, noise and JPEG artefacts: kept (M3UNet). One pass removed noise and JPEG artefacts together." in text
    assert '  M3UNet was told: "remove the noise"' in text and "**Stopped:** nothing wrong is found any more" in text
    assert json.dumps(rep.to_dict())


# ---------------------------------------------------------------------------- the factory
def test_factory_builds_the_pool_and_hands_every_loaded_network_to_the_host(tmp_path):
    from test_library import FakeText
    from m3unet.auto.factory import build_auto_restorer
    from m3unet.core.unet import M3UNet, M3UNetConfig
    from m3unet.restore.pipeline import Restorer
    restorer = Restorer(M3UNet(M3UNetConfig(width=8, enc_blocks=[1, 1, 1], mid_blocks=1, dec_blocks=[1, 1, 1],
                                            cond_dim=32, embed_dim=32, heads=1)).eval(), FakeText())
    managed = []
    policy = RestorePolicy(print_guard=False)
    auto = build_auto_restorer(restorer, model_path=tmp_path / "user.safetensors", classifier="shipped",
                               policy=policy, manage=managed.append)
    # A user's model: no shipped specialists; the deblur tools join; the estimator and the classifier are managed.
    assert set(auto.pool.models) == {"kernel-deblur", "motion-deblur"} and auto.policy is policy and auto.pool.policy is policy
    assert any(isinstance(m, torch.nn.Module) and m is auto.classifier.model for m in managed)
    assert any(m is auto.pool.models["kernel-deblur"].estimator for m in managed)
    shipped = build_auto_restorer(restorer, classifier=None, kernel_deblur=False)
    assert shipped.classifier is None and {"m3unet-jpeg", "m3unet-noise", "m3unet-smallprint"} == set(shipped.pool.models)
    no_solo = build_auto_restorer(restorer, classifier=None, kernel_deblur=False,
                                  policy=RestorePolicy(solo_specialists=False))
    assert set(no_solo.pool.models) == {"m3unet-smallprint"}  # only what the policy uses is loaded


def test_policy_command_prints_and_writes_the_table(tmp_path):
    out = tmp_path / "policy.md"
    r = subprocess.run([sys.executable, "-m", "m3unet", "policy", "--md", str(out)], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert DEFAULT_POLICY.table() in r.stdout and DEFAULT_POLICY.table() in out.read_text()


def test_a_report_of_an_image_too_small_to_read_says_so():
    rep = AutoReport(None, None, Plan([]), stopped=Reason("blind", {"why": "small", "steps": 1}))
    assert render(rep).startswith("**Found:** not read: the image is too small for the classifier")
    rep = AutoReport(None, None, Plan([]), stopped=Reason("blind", {"why": "no_classifier", "steps": 1}))
    assert render(rep).startswith("**Found:** not read (no degradation classifier)")


# ---------------------------------------------------------------------------- the low-light floor
def test_faint_low_light_is_left_alone_and_the_report_says_why():
    from m3unet.auto.guards import faint_readings
    faint = finding(lowlight=(0.8, 0.05))
    strong = finding(lowlight=(0.8, 0.6))
    floor = DEFAULT_POLICY.replace(lowlight_min_severity=0.2)
    assert faint_readings(faint, floor) == ("lowlight",) and faint_readings(strong, floor) == ()
    assert faint_readings(faint, DEFAULT_POLICY.replace(lowlight_min_severity=0.0)) == ()
    assert faint_readings(finding(), floor) == () and faint_readings(None, floor) == ()
    rep = AutoReport(Reading.of(finding(), faint=["lowlight"]), 0.0, Plan([]), stopped=Reason("clean"))
    text = render(rep)
    assert "not brightened" in text and "_" not in text.split("(")[0]


def test_the_restorer_does_not_plan_brightening_for_faint_low_light():
    import torch
    from m3unet.auto.pool import Pool
    from m3unet.auto.restorer import AutoRestorer

    def classifier(image):
        return [finding(lowlight=(0.8, 0.05)) for _ in range(image.shape[0])]

    x = torch.full((1, 160, 160, 3), 0.15)
    floor = AutoRestorer(Pool(None, []), classifier, policy=DEFAULT_POLICY.replace(lowlight_min_severity=0.2))
    rep = floor.run(x).reports[0]
    assert not rep.plan.steps and "lowlight_floor" in rep.rules and rep.first.faint == ["lowlight"]
    acting = AutoRestorer(Pool(None, []), classifier, policy=DEFAULT_POLICY.replace(lowlight_min_severity=0.0))
    rep = acting.run(x).reports[0]
    assert [s.tasks for s in rep.plan.steps] == [["lowlight"]] and "lowlight_floor" not in rep.rules


def test_a_dark_scene_whose_highlights_reach_white_is_not_brightened():
    """lowlight_max_highlight: the same low-light reading is acted on for an under-exposed image (its
    brightest pixels well under white) and left alone, with the report saying why, for a dark scene
    whose highlights reach near white; over 1 the rule is off."""
    import torch
    from m3unet.auto.guards import highlight, lit_readings
    from m3unet.auto.pool import Pool
    from m3unet.auto.restorer import AutoRestorer

    under = torch.full((1, 160, 160, 3), 0.15)
    scene = under.clone()
    scene[:, :12, :12] = 0.97  # a lamp: 144 of 25600 pixels, more than the top 0.5 %
    assert highlight(under[0].permute(2, 0, 1)) < 0.2 and highlight(scene[0].permute(2, 0, 1)) > 0.9
    strong = finding(lowlight=(0.9, 0.6))
    limit = DEFAULT_POLICY.replace(lowlight_max_highlight=0.8, lowlight_min_severity=0.2)
    assert lit_readings(strong, scene[0].permute(2, 0, 1), limit) == ("lowlight",)
    assert lit_readings(strong, under[0].permute(2, 0, 1), limit) == ()
    assert lit_readings(strong, scene[0].permute(2, 0, 1), limit.replace(lowlight_max_highlight=2.0)) == ()
    assert lit_readings(finding(), scene[0].permute(2, 0, 1), limit) == ()

    def classifier(image):
        return [strong for _ in range(image.shape[0])]

    auto = AutoRestorer(Pool(None, []), classifier, policy=limit)
    rep = auto.run(scene).reports[0]
    assert not rep.plan.steps and "lowlight_highlights" in rep.rules and rep.first.lit == ["lowlight"]
    assert "brighter than an under-exposed photo's" in render(rep)
    rep = auto.run(under).reports[0]
    assert [s.tasks for s in rep.plan.steps] == [["lowlight"]] and "lowlight_highlights" not in rep.rules


def test_a_hazy_reading_on_an_image_with_deep_blacks_is_not_dehazed():
    """haze_min_black_point: the same haze reading is acted on for a hazy image (airlight lifts every
    pixel, so its black point is high) and left alone, with the report saying why, for a clear grey
    scene that keeps deep blacks; the black point ignores a few isolated dark pixels; 0 turns it off."""
    from m3unet.auto.guards import black_point, deep_black_readings
    from m3unet.auto.pool import Pool
    from m3unet.auto.restorer import AutoRestorer

    scene = torch.linspace(0.35, 0.8, 160).view(1, 1, 160, 1).expand(1, 160, 160, 3).clone()  # a grey wall
    scene[:, 100:140, 20:60] = 0.03                  # a dark doorway: 1600 of 25600 pixels
    t, airlight = 0.6, 0.85
    hazy = scene * t + airlight * (1 - t)             # the atmospheric scattering model
    specks = torch.full((1, 160, 160, 3), 0.6)
    specks[:, ::16, ::16] = 0.0                       # isolated dark pixels (noise), not a dark region
    assert black_point(scene[0].permute(2, 0, 1)) < 0.05
    assert black_point(hazy[0].permute(2, 0, 1)) == pytest.approx(0.03 * t + airlight * (1 - t), abs=0.01)
    assert not guards.looks_like_print(scene[0].permute(2, 0, 1))
    assert black_point(specks[0].permute(2, 0, 1)) > 0.5
    read = finding(haze=(0.95, 0.5))
    limit = DEFAULT_POLICY.replace(haze_min_black_point=0.15)
    assert deep_black_readings(read, scene[0].permute(2, 0, 1), limit) == ("haze",)
    assert deep_black_readings(read, hazy[0].permute(2, 0, 1), limit) == ()
    assert deep_black_readings(read, scene[0].permute(2, 0, 1), limit.replace(haze_min_black_point=0.0)) == ()
    assert deep_black_readings(finding(), scene[0].permute(2, 0, 1), limit) == ()

    def classifier(image):
        return [read for _ in range(image.shape[0])]

    auto = AutoRestorer(Pool(None, []), classifier, policy=limit)
    rep = auto.run(scene).reports[0]
    assert not rep.plan.steps and "haze_black_point" in rep.rules and rep.first.deep_blacks == ["haze"]
    assert "keeps deep blacks" in render(rep)
    rep = auto.run(hazy).reports[0]
    assert [s.tasks for s in rep.plan.steps] == [["haze"]] and "haze_black_point" not in rep.rules


def test_leave_alone_keeps_a_reading_out_of_an_automatic_plan_and_says_so():
    """leave_alone (the user's choice): a low-light and haze reading is not acted on, for the whole run,
    and the report names what was read and left; other readings are still acted on; a given plan runs
    as written; the entry takes only classifier labels."""
    from m3unet.auto.pool import Pool
    from m3unet.auto.restorer import AutoRestorer

    dark = torch.full((1, 160, 160, 3), 0.15)  # highlights far under the limit: a plain under-exposure
    read = finding(lowlight=(0.95, 0.6), haze=(0.9, 0.5), noise=(0.9, 0.5))

    def classifier(image):
        return [read for _ in range(image.shape[0])]

    shipped = AutoRestorer(Pool(None, []), classifier).run(dark).reports[0]
    assert {"lowlight", "haze"} <= {t for s in shipped.plan.steps for t in s.tasks}
    assert "leave_alone" not in shipped.rules and shipped.first.left == []
    keep = DEFAULT_POLICY.replace(leave_alone=("lowlight", "haze"))
    rep = AutoRestorer(Pool(None, []), classifier, policy=keep).run(dark).reports[0]
    assert [t for s in rep.plan.steps for t in s.tasks] == ["noise"]
    assert "leave_alone" in rep.rules and rep.first.left == ["lowlight", "haze"]
    assert "darkness (low light) and haze were read too, and left alone as asked" in render(rep)
    only = finding(lowlight=(0.95, 0.6))
    rep = AutoRestorer(Pool(None, []), lambda image: [only], policy=keep).run(dark).reports[0]
    assert not rep.plan.steps and "nothing else wrong found; darkness (low light) was read too" in render(rep)

    class Brighten:  # a Restorer stand-in: every pass doubles the image
        def restore(self, image, **kwargs):
            return (image * 2).clamp(0, 1)

    given = Plan([Step("lowlight", 0.6)])
    res = AutoRestorer(Pool(Brighten(), []), classifier, policy=keep).run(dark, given)
    assert [s.tasks for s in res.reports[0].plan.steps] == [["lowlight"]] and "leave_alone" not in res.reports[0].rules
    assert float(res.image.mean()) == pytest.approx(0.30, abs=1e-6)  # the given plan's step ran
    assert policy_from(["leave_alone=lowlight, haze"]).leave_alone == ("lowlight", "haze")
    with pytest.raises(PolicyError, match="shadows unknown; choose from noise, .*lowlight"):
        policy_from(["leave_alone=shadows"])


def test_a_low_light_reading_just_over_the_floor_is_brightened_in_part():
    """lowlight_ramp: between the floor and the floor plus the ramp the brightening step's change is
    scaled by (severity - floor) / ramp, and the report says how much was applied; at the top of the
    ramp, or with it off, the step is applied in full; under the floor nothing is done."""
    import torch
    from m3unet.auto.guards import brightening_share
    from m3unet.auto.pool import Pool, PoolModel
    from m3unet.auto.restorer import AutoRestorer

    ramp = DEFAULT_POLICY.replace(lowlight_min_severity=0.2, lowlight_ramp=0.1)
    assert brightening_share(finding(lowlight=(0.9, 0.25)), ramp) == pytest.approx(0.5)
    assert brightening_share(finding(lowlight=(0.9, 0.2)), ramp) == 0.0
    assert brightening_share(finding(lowlight=(0.9, 0.45)), ramp) == 1.0
    assert brightening_share(finding(lowlight=(0.9, 0.25)), ramp.replace(lowlight_ramp=0.0)) == 1.0
    assert brightening_share(finding(), ramp) == 1.0

    def run(severity: float, policy) -> tuple[float, object]:
        def classifier(image):  # dark until brightened past a mean of 0.2
            return [finding(lowlight=(0.9, severity)) if float(im.mean()) < 0.2 else finding()
                    for im in image]
        pool = Pool(None, [PoolModel(lambda t: (3 * t).clamp(0, 1), "lowlight", "triple")])
        result = AutoRestorer(pool, classifier, policy=policy).run(torch.full((1, 160, 160, 3), 0.15))
        return float(result.image.mean()), result.reports[0]

    level, rep = run(0.25, ramp)
    assert level == pytest.approx(0.30, abs=1e-4) and "lowlight_ramp" in rep.rules
    assert [s.outcome for s in rep.steps] == ["kept"] and rep.steps[0].reason.facts["share"] == 0.5
    assert "50 % of the brightening was applied" in render(rep)
    level, rep = run(0.25, ramp.replace(lowlight_ramp=0.0))
    assert level == pytest.approx(0.45, abs=1e-4) and "lowlight_ramp" not in rep.rules
    level, rep = run(0.5, ramp)
    assert level == pytest.approx(0.45, abs=1e-4) and "lowlight_ramp" not in rep.rules
    level, rep = run(0.15, ramp)
    assert level == pytest.approx(0.15, abs=1e-4) and not rep.steps


@pytest.mark.parametrize("label", ["lowlight", "haze"])
def test_a_reading_that_appears_only_after_a_step_is_ignored_when_asked(label: str):
    """lowlight_as_given / haze_as_given: the image as given reads noise only; after the noise step the
    reading shows low light (or haze). With the rule the run does not act on it (and says the rule
    fired), without it it does; the other label's rule does not interfere."""
    import torch
    from m3unet.auto.pool import Pool, PoolModel
    from m3unet.auto.restorer import AutoRestorer

    def run(as_given: bool):
        calls = []

        def classifier(image):
            calls.append(1)
            f = finding(noise=(0.9, 0.5)) if len(calls) == 1 else finding(**{label: (0.9, 0.6)})
            return [f for _ in range(image.shape[0])]

        pool = Pool(None, [PoolModel(lambda t: t * 0.5, "noise", "halver"), PoolModel(lambda t: t, label, "same")],
                    tile=64)
        other = "haze" if label == "lowlight" else "lowlight"
        policy = DEFAULT_POLICY.replace(**{f"{label}_as_given": as_given, f"{other}_as_given": True})
        return AutoRestorer(pool, classifier, policy=policy).run(torch.full((1, 160, 160, 3), 0.4)).reports[0]

    on, off = run(True), run(False)
    assert [s.tasks for s in on.steps] == [["noise"]] and f"{label}_as_given" in on.rules
    assert [label] in [s.tasks for s in off.steps] and f"{label}_as_given" not in off.rules
