"""Plan (JSON, validation, measured order), model pool (callables and a real spandrel model) and the
automatic restore loop (model choice, rollback, stopping, determinism, the input contract)."""
from __future__ import annotations

import json

import pytest
import torch

from auto_helpers import NoiseReader, add_noise, load_descriptor, noise_sigma, save_compact_blur, smooth_photo
from m3unet.auto import restorer as ar
from m3unet.auto.guards import accept
from m3unet.auto.decisions import Reading, Reason
from m3unet.auto.guards import clipped_share
from m3unet.auto.policy import DEFAULT_POLICY, RestorePolicy
from m3unet.auto.restorer import AutoRestorer
from m3unet.auto.scoring import degradation_score, effect, label_score
from m3unet.auto.classifier import LABELS, Classifier, DegradationClassifier, Finding
from m3unet.core.metrics import psnr
from m3unet.evaluation.orders import pair_margins, restore_orders, summarize, task_sets
from m3unet.auto.plan import FALLBACK_ORDER, ORDER_TABLE, TASKS, OrderTable, Plan, PlanError, Step, load_order_table, order_tasks, parse_plans, plan_for, plan_from_finding
from m3unet.auto.pool import Pool, PoolError, PoolModel, load_pool_model, parse_pool_arg
from m3unet.core.weights import DEFAULT_WEIGHTS

pytestmark = pytest.mark.unit


# Every rule of the policy switched on (some are off by default): the tests check each mechanism.
ALL_RULES = RestorePolicy(retry=True, prefer_margin=0.05, solo_specialists=True, exposure_guard=True)


def finding(**labels: float) -> Finding:
    """A reading with the given labels detected (p = 0.9) at the given severities."""
    return Finding({k: 0.9 if k in labels else 0.01 for k in LABELS}, {k: labels.get(k, 0.0) for k in LABELS})


def chw(image: torch.Tensor) -> torch.Tensor:
    return image[0].permute(2, 0, 1)


# ---------------------------------------------------------------------------- plan
def test_tasks_are_the_classifier_labels():
    assert TASKS == LABELS


def test_plan_json_round_trip_and_shorthand():
    plan = plan_for({"noise": 0.7, "jpeg": 0.3}, OrderTable(), joint=())
    assert [s.task for s in plan.steps] == ["jpeg", "noise"]  # fallback: camera pipeline reversed
    assert plan.steps[1].text == "remove the heavy noise" and plan.steps[0].model == "auto"
    again = Plan.from_json(plan.to_json())
    assert again == plan and json.loads(plan.to_json())["version"] == 1
    short = Plan.from_json('["noise", {"task": "haze", "strength": 1, "model": "m3unet"}]')
    assert short.steps == [Step("noise"), Step("haze", 1.0, "m3unet", "")]
    assert short.steps[1].instruction() == "remove the heavy haze"
    assert Step("blur", 0.1, text="  sharpen it ").instruction() == "sharpen it"


@pytest.mark.parametrize("text, message", [
    ('{"steps": [{"task": "nosie"}]}', "plan step 1: unknown task 'nosie'; choose one of noise, blur"),
    ('[{"task": "noise"}, {"task": "jpeg", "strength": 1.5}]', "plan step 2 (jpeg): strength must be a number between 0"),
    ('[{"task": "noise", "modle": "x"}]', "plan step 1 has unknown key(s) ['modle']; allowed keys: task, strength"),
    ('{"steps": [{"task": "noise",}]}', "plan is not valid JSON (line 1, column"),
    ('{"stepz": []}', "plan has unknown key(s) ['stepz']"),
    ('42', "plan must be an object"),
    ('[{"task": "noise", "model": ""}]', "plan step 1 (noise): model must be a name"),
    ('[{"task": "noise", "text": 3}]', "plan step 1 (noise): text must be a string"),
    ('[{"task": "noise", "strength": true}]', "strength must be a number"),
])
def test_edited_plan_errors_name_the_step_and_field(text, message):
    with pytest.raises(PlanError) as info:
        Plan.from_json(text)
    assert message in str(info.value)


def test_parse_plans_for_batches():
    assert parse_plans("  ") is None
    one = parse_plans('[{"task": "noise"}]', batch=2)
    assert isinstance(one, Plan)
    two = parse_plans(json.dumps([Plan([Step("noise")]).to_dict(), Plan([]).to_dict()]), batch=2)
    assert isinstance(two, list) and len(two) == 2 and two[1].steps == []
    with pytest.raises(PlanError, match="list of 2 plans but the batch has 3"):
        parse_plans(json.dumps([Plan([]).to_dict()] * 2), batch=3)


def test_order_maximises_measured_pairwise_gains():
    table = OrderTable({("noise", "jpeg"): 0.4, ("jpeg", "haze"): 0.2, ("haze", "noise"): 0.1})
    # noise>jpeg (+0.4), jpeg>haze (+0.2) outweigh haze>noise (+0.1): noise, jpeg, haze.
    assert order_tasks(["haze", "jpeg", "noise"], table) == ["noise", "jpeg", "haze"]
    assert order_tasks(["jpeg", "noise"], table) == ["noise", "jpeg"]
    # Unmeasured pairs follow the camera pipeline in reverse.
    assert order_tasks(["blur", "lowlight"], table) == [t for t in FALLBACK_ORDER if t in ("blur", "lowlight")]
    assert FALLBACK_ORDER[0] == "jpeg" and FALLBACK_ORDER[-1] == "blur"
    plan = plan_from_finding(finding(noise=0.5, jpeg=0.2), table)
    assert plan.tasks == ["noise", "jpeg"] and plan.steps[0].strength == 0.45  # joint: p x severity


def test_order_measurement_tree_and_summary():
    """restore_orders runs every prefix once; summarize pools pairwise margins over pairs and triples."""
    from m3unet.training import synthesis as deg
    calls = []

    def run(x, text, task):  # a fake restorer: each text adds a known amount; order matters via clamp
        assert task in ("noise", "jpeg", "haze")
        calls.append(text)
        return (x + (0.2 if "noise" in text else -0.1)).clamp(0, 1)

    degs = [deg.make("noise", 0.5), deg.make("jpeg", 0.5), deg.make("haze", 0.5, torch.Generator())]
    clean = torch.full((3, 8, 8), 0.5)
    orders = restore_orders(run, torch.full((3, 8, 8), 0.2), degs, clean)
    assert len(orders) == 6 and len(calls) == 3 + 6 + 6
    margins = pair_margins(orders)
    assert set(margins) == {("haze", "jpeg"), ("haze", "noise"), ("jpeg", "noise")}
    recs = [{"tasks": ["jpeg", "noise"], "orders": {"jpeg>noise": 30.0, "noise>jpeg": 31.0}},
            {"tasks": ["haze", "jpeg", "noise"], "orders": {">".join(o): v for o, v in orders.items()}}]
    table = summarize(recs, {"version": 1})
    assert table["sets"]["jpeg+noise"]["best"] == ["noise", "jpeg"]
    assert table["pairwise"]["noise>jpeg"]["n"] == 2
    assert len(task_sets()) == 20 + 30  # blur and motion never together


def test_shipped_order_table_matches_the_shipped_weights():
    """The planner's evidence was measured with the weights that ship; re-run plan-orders if not."""
    from m3unet.evaluation.orders import weights_hash
    data = json.loads(ORDER_TABLE.read_text())
    assert data["weights_sha256"] == weights_hash(DEFAULT_WEIGHTS), (
        "m3unet/auto/plan_orders.json was measured with other M3UNet weights: run `python -m m3unet plan-orders`")
    assert len(data["pairwise"]) == 20 and all(v["n"] >= 2 for v in data["pairwise"].values())
    table = load_order_table()
    assert len(table.margin) == 20
    for key, s in data["sets"].items():
        assert sorted(order_tasks(key.split("+"), table)) == sorted(key.split("+"))


# ---------------------------------------------------------------------------- pool
def test_pool_callable_scales_tiles_and_errors():
    x = torch.rand(3, 70, 90)
    double = PoolModel(lambda t: torch.nn.functional.interpolate(t, scale_factor=2, mode="nearest"), "lowres", "up",
                       tile=64, overlap=8)
    y = double(x)  # tiled: 2x2 tiles blended at the output scale
    assert y.shape == (3, 140, 180)
    torch.testing.assert_close(y, torch.nn.functional.interpolate(x[None], scale_factor=2, mode="nearest")[0])
    half = PoolModel(lambda t: t * 0.5, ["noise", "jpeg"], "half", tile=32, overlap=4)
    torch.testing.assert_close(half(x), x * 0.5)
    grey = PoolModel(lambda t: t.mean(1, keepdim=True), "noise", "grey")
    assert grey(x).shape == (3, 70, 90)
    with pytest.raises(PoolError, match="not a whole-number scale"):
        PoolModel(lambda t: t[..., :-1, :], "noise", "crop")(x)
    with pytest.raises(PoolError, match="unknown task tag"):
        PoolModel(lambda t: t, "sharpen", "x")
    with pytest.raises(PoolError, match="reserved"):
        PoolModel(lambda t: t, "noise", "m3unet")
    with pytest.raises(PoolError, match="not a model"):
        PoolModel("realesrgan.pth", "noise", "x")
    pool = Pool(None, [half, double])
    assert pool.candidates(Step("noise")) == ["half"] and pool.candidates(Step("lowres", model="up")) == ["up"]
    assert pool.max_scale == 1  # callables declare no scale
    with pytest.raises(PoolError, match="the plan names model 'gone' for 'noise'"):
        pool.candidates(Step("noise", model="gone"))
    with pytest.raises(PoolError, match="no model in the pool serves 'haze'"):
        pool.candidates(Step("haze"))
    with pytest.raises(PoolError, match="two pool models are named 'half'"):
        Pool(None, [half, half])
    assert parse_pool_arg("a=b.safetensors=noise,jpeg") == ("a=b.safetensors", ["noise", "jpeg"])
    with pytest.raises(PoolError, match="write FILE=TASK"):
        parse_pool_arg("model.safetensors")


def test_real_spandrel_model_loads_and_runs(tmp_path):
    """A RealESRGAN Compact state dict saved as safetensors, detected and loaded by spandrel."""
    path = save_compact_blur(tmp_path / "compact_1x.safetensors", 1)
    desc = load_descriptor(path)
    assert desc.architecture.name == "RealESRGAN Compact" and desc.scale == 1
    model = PoolModel(desc, "noise")
    assert model.name == "RealESRGAN Compact 1x" and model.scale == 1
    clean = smooth_photo(200, 300)
    noisy = add_noise(clean, 0.06)
    out = model(chw(noisy))
    assert out.shape == (3, 200, 300)
    assert psnr(out, chw(clean)) > psnr(chw(noisy), chw(clean)) + 3  # the binomial blur denoises
    loaded = load_pool_model(path, ["noise"], "mine")  # the CLI's --pool path: same model
    torch.testing.assert_close(loaded(chw(noisy)), out)
    up = PoolModel(load_descriptor(save_compact_blur(tmp_path / "compact_2x.safetensors", 2)), "lowres", tile=128)
    y = up(chw(noisy))  # 2x, in tiles
    assert y.shape == (3, 400, 600) and up.scale == 2
    (tmp_path / "bad.pth").write_bytes(b"\x80\x04")
    with pytest.raises(ValueError, match="pickled checkpoints are refused"):
        load_pool_model(tmp_path / "bad.pth", "noise")
    from safetensors.torch import save_file
    save_file({"foo": torch.zeros(2)}, str(tmp_path / "unknown.safetensors"))
    with pytest.raises(PoolError, match="spandrel does not recognise"):
        load_pool_model(tmp_path / "unknown.safetensors", "noise")


# ---------------------------------------------------------------------------- automatic restore
@pytest.fixture(scope="module")
def spandrel_blur(tmp_path_factory):
    return load_descriptor(save_compact_blur(tmp_path_factory.mktemp("pool") / "c.safetensors", 1))


def noisy_adder(t: torch.Tensor) -> torch.Tensor:
    return (t + 0.05 * torch.randn(t.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)


def test_score_effect_and_acceptance():
    assert degradation_score(finding()) == 0
    assert degradation_score(finding(noise=1.0)) > degradation_score(finding(noise=0.0)) > 0.4
    assert label_score(finding(noise=1.0), "noise") == pytest.approx(0.9)
    e = effect(finding(noise=0.8, jpeg=0.2), finding(jpeg=0.2, blur=0.0), "noise")
    assert e.own_drop == pytest.approx(0.805) and e.side_rise == pytest.approx(0.45)
    assert accept(e, False) and e.benefit == pytest.approx(0.805 - DEFAULT_POLICY.side_weight * 0.45)
    worse_own = effect(finding(noise=0.1), finding(noise=0.9), "noise")
    assert not accept(worse_own, False) and not accept(worse_own, True)
    nothing = effect(finding(jpeg=0.5), finding(jpeg=0.5), "haze")  # a step for an undetected degradation
    assert not accept(nothing, False) and accept(nothing, True)  # automatic: needs a gain; user plan: no harm


def test_auto_picks_the_model_that_removes_most_and_reports_why(spandrel_blur):
    clean = smooth_photo()
    noisy = add_noise(clean, 0.08)
    reader = NoiseReader()
    pool = Pool(None, [PoolModel(noisy_adder, "noise", "worse"), PoolModel(spandrel_blur, "noise", "compact")])
    result = AutoRestorer(pool, reader, OrderTable()).run(noisy, budget=3, seed=1)
    rep = result.reports[0]
    assert rep.plan.tasks == ["noise"] and rep.plan.steps[0].model == "auto"
    assert [(s.task, s.outcome, s.chosen) for s in rep.steps] == [("noise", "kept", "compact")]
    drops = {a.model: a.own_drop for a in rep.steps[0].attempts}
    assert drops["compact"] > 0.3 > 0 > drops["worse"]
    assert rep.stopped.code == "clean" and rep.steps[0].reason.code == "best_candidate"
    assert rep.steps[0].reason.facts["count"] == 2
    assert psnr(chw(result.image), chw(clean)) > psnr(chw(noisy), chw(clean)) + 3
    text = result.text()
    assert "**Found:** noise (" in text and "Step 1, noise: kept (compact). Of 2 candidates it removed the most" in text
    assert json.loads(result.plan_json())["steps"][0]["task"] == "noise"
    assert json.dumps(rep.to_dict())  # the report serialises


def test_a_step_that_makes_things_worse_is_rolled_back():
    noisy = add_noise(smooth_photo(), 0.03)
    pool = Pool(None, [PoolModel(noisy_adder, "noise", "worse")])
    result = AutoRestorer(pool, NoiseReader(), OrderTable()).run(noisy, budget=4)
    rep = result.reports[0]
    assert [s.outcome for s in rep.steps] == ["rolled back"]
    assert rep.stopped.code == "all_tried" and rep.steps[0].reason.code == "did_harm"
    assert "every way to remove it was tried" in result.text()
    assert torch.equal(result.image, noisy)  # untouched


def test_clean_input_is_returned_unchanged_without_running_models():
    ran = []
    pool = Pool(None, [PoolModel(lambda t: ran.append(1) or t, "noise", "spy")])
    clean = smooth_photo()
    result = AutoRestorer(pool, NoiseReader(), OrderTable()).run(clean)
    assert torch.equal(result.image, clean) and not ran
    assert result.reports[0].stopped.code == "clean" and result.reports[0].plan.steps == []


def test_given_plan_budget_skips_and_progress(spandrel_blur):
    noisy = add_noise(smooth_photo(), 0.08)
    pool = Pool(None, [PoolModel(spandrel_blur, ["noise", "jpeg", "blur"], "compact")])
    seen = []
    plan = Plan([Step("noise", 0.5, "compact"), Step("jpeg"), Step("blur")])
    result = AutoRestorer(pool, NoiseReader(), OrderTable()).run(noisy, plan=plan, budget=2, progress=seen.append)
    rep = result.reports[0]
    # A given plan runs as written (no stop-when-clean), is still scored, and obeys the budget.
    assert [s.task for s in rep.steps] == ["noise", "jpeg"]
    assert rep.steps[0].outcome == "kept" and rep.steps[1].outcome == "kept"  # harmless: kept
    harmful = Plan([Step("noise", 0.5, "worse")])
    pool2 = Pool(None, [PoolModel(noisy_adder, "noise", "worse")])
    undone = AutoRestorer(pool2, NoiseReader(), OrderTable()).run(add_noise(smooth_photo(), 0.01), plan=harmful)
    assert undone.reports[0].steps[0].outcome == "rolled back" and undone.reports[0].steps[0].reason.code == "did_harm"
    assert rep.steps[0].reason.code == "user_step"
    assert rep.stopped == Reason("budget", {"budget": 2, "not_run": ["blur"]})
    assert seen and seen[-1].done == seen[-1].total == 2
    assert [p.done for p in seen] == sorted(p.done for p in seen)  # never goes back
    with pytest.raises(PoolError, match="names model 'pool_model_9'"):
        AutoRestorer(pool, NoiseReader(), OrderTable()).run(noisy, plan=Plan([Step("noise", model="pool_model_9")]))
    with pytest.raises(ValueError, match="step budget must be between 1 and 16"):
        AutoRestorer(pool, NoiseReader(), OrderTable()).run(noisy, budget=0)


def test_planned_steps_no_longer_detected_are_skipped(spandrel_blur):
    """The first step's result is re-read: a planned task that is gone is skipped, not run."""
    class Reader(NoiseReader):
        def __call__(self, image):
            out = super().__call__(image)
            for f in out:  # JPEG is read while noise is (it "goes away" with it); haze always
                f.probabilities["jpeg"] = f.probabilities["noise"]
                f.severity["jpeg"] = 0.2
                f.probabilities["haze"], f.severity["haze"] = 0.9, 0.5
            return out

    noisy = add_noise(smooth_photo(), 0.08)
    pool = Pool(None, [PoolModel(spandrel_blur, ["noise", "jpeg"], "compact")])
    table = OrderTable({("noise", "jpeg"): 1.0, ("noise", "haze"): 1.0, ("jpeg", "haze"): 1.0})
    rep = AutoRestorer(pool, Reader(), table).run(noisy).reports[0]
    assert [(s.task, s.outcome) for s in rep.steps] == [("noise", "kept"), ("jpeg", "skipped"), ("haze", "skipped")]
    assert rep.steps[1].reason.code == "no_longer_detected" and rep.steps[2].reason.code == "no_model"
    assert rep.stopped == Reason("all_tried", {"labels": ["haze"]})


class ScriptedReader:
    """A classifier stand-in that reads a flat image's grey level as a state: {level: {label: (p, s)}}."""

    def __init__(self, script: dict[float, dict[str, tuple[float, float]]]):
        self.script = script

    def __call__(self, image):
        out = []
        for img in image:
            state = self.script[round(float(img.float().mean()), 2)]
            out.append(Finding({k: state.get(k, (0.01, 0.0))[0] for k in LABELS},
                               {k: state.get(k, (0.01, 0.0))[1] for k in LABELS}))
        return out


def test_a_rolled_back_step_is_retried_first():
    """Like the measured case: denoised first, the brightening step reads as no better and is rolled
    back; brightened first, both degradations read gone. The retry's run is returned."""
    reader = ScriptedReader({0.30: {"noise": (0.9, 0.5), "lowlight": (0.9, 0.6)},  # input
                             0.40: {"lowlight": (0.9, 0.6)},                        # denoised
                             0.60: {"lowlight": (0.9, 0.6)},                        # denoised, brightened: misread
                             0.50: {}})                                             # brightened (noise gone too)
    pool = Pool(None, [PoolModel(lambda t: t + 0.1, "noise", "denoise"),
                       PoolModel(lambda t: t + 0.2, "lowlight", "brighten")])
    flat = torch.full((1, 32, 32, 3), 0.30)
    table = OrderTable({("noise", "lowlight"): 1.0})
    result = AutoRestorer(pool, reader, table, policy=ALL_RULES).run(flat)
    rep = result.reports[0]
    assert [(s.task, s.outcome) for s in rep.steps] == [("lowlight", "kept")]
    assert rep.stopped.code == "clean" and rep.removed == 2
    assert rep.retry.code == "retry_better" and rep.retry.facts["rolled"] == ["lowlight"]
    assert "**Second try:** the usual order left darkness (low light); trying it first did better" in result.text()
    torch.testing.assert_close(result.image, flat + 0.2)
    once = AutoRestorer(pool, reader, table, policy=ALL_RULES).run(flat, retry=False).reports[0]
    assert [(s.task, s.outcome) for s in once.steps] == [("noise", "kept"), ("lowlight", "rolled back")]
    assert once.retry is None and once.removed == 1
    no_retry = AutoRestorer(pool, reader, table, policy=RestorePolicy(retry=False)).run(flat).reports[0]
    assert no_retry.retry is None and [s.outcome for s in no_retry.steps] == ["kept", "rolled back"]
    # A rolled-back step for a degradation the first reading did not show triggers no retry.
    reader.script.update({0.30: {"noise": (0.9, 0.5)}, 0.40: {"lowres": (0.9, 0.5)}, 0.60: {"lowres": (0.9, 0.5)}})
    pool.models["brighten"].tasks = ("lowres",)
    other = AutoRestorer(pool, reader, table, policy=ALL_RULES).run(flat).reports[0]
    assert [(s.task, s.outcome) for s in other.steps] == [("noise", "kept"), ("lowres", "rolled back")]
    assert other.retry is None


def test_the_first_candidate_wins_unless_another_is_clearly_better():
    """Tagged models are tried before M3UNet, and the first is kept when the classifier reads the
    others as better by less than PREFER_MARGIN (jitter); a clearly better one still wins."""
    reader = ScriptedReader({0.50: {"noise": (0.9, 0.8)},       # input: score 0.81
                             0.30: {"noise": (0.1, 0.0)},       # first candidate: 0.05 left
                             0.40: {"noise": (0.5, 0.2)},       # first candidate, weaker: 0.30 left
                             0.20: {}})                          # second candidate: clean (0.005)
    flat = torch.full((1, 32, 32, 3), 0.50)
    for first_out, chosen in ((0.30, "specialist"), (0.40, "other")):
        pool = Pool(None, [PoolModel(lambda t, v=first_out: torch.full_like(t, v), "noise", "specialist"),
                           PoolModel(lambda t: torch.full_like(t, 0.20), "noise", "other")])
        rep = AutoRestorer(pool, reader, OrderTable(), policy=ALL_RULES).run(flat, retry=False).reports[0]
        assert [a.model for a in rep.steps[0].attempts] == ["specialist", "other"]
        assert rep.steps[0].chosen == chosen, (first_out, rep.steps[0])
    assert ALL_RULES.prefer_margin == ALL_RULES.min_gain and DEFAULT_POLICY.prefer_margin == 0.0
    # Without the margin the best candidate wins outright.
    pool = Pool(None, [PoolModel(lambda t: torch.full_like(t, 0.30), "noise", "specialist"),
                       PoolModel(lambda t: torch.full_like(t, 0.20), "noise", "other")])
    rep = AutoRestorer(pool, reader, OrderTable(), policy=RestorePolicy(prefer_margin=0.0)).run(flat).reports[0]
    assert rep.steps[0].chosen == "other"


def test_input_contract_dtype_channels_alpha_batch_and_upscale(spandrel_blur, tmp_path):
    clean = smooth_photo(48, 64)
    rgba = torch.cat([add_noise(clean, 0.08), torch.rand(1, 48, 64, 1)], -1)
    batch = torch.cat([rgba, torch.cat([clean, rgba[..., 3:]], -1)])
    u8 = (batch * 255).round().to(torch.uint8)
    pool = Pool(None, [PoolModel(spandrel_blur, "noise", "compact")])
    auto = AutoRestorer(pool, NoiseReader(), OrderTable())
    out = auto.run(u8, seed=5)
    assert out.image.dtype == torch.uint8 and out.image.shape == u8.shape
    assert torch.equal(out.image[..., 3], u8[..., 3])  # alpha untouched
    assert len(out.reports) == 2 and out.reports[1].steps == []  # the clean one is left alone
    assert isinstance(json.loads(out.plan_json()), list)
    again = auto.run(u8, seed=5)
    assert torch.equal(again.image, out.image)  # deterministic
    grey = auto.run(batch[:1, ..., :1].contiguous())
    assert grey.image.shape == (1, 48, 64, 1)
    up2 = PoolModel(load_descriptor(save_compact_blur(tmp_path / "c2.safetensors", 2)), "noise", "up2")
    big = AutoRestorer(Pool(None, [up2]), NoiseReader(), OrderTable()).run(rgba, upscale=True)
    assert big.image.shape == (1, 96, 128, 4) and big.reports[0].steps[0].outcome == "kept"
    small = AutoRestorer(Pool(None, [up2]), NoiseReader(), OrderTable()).run(rgba)
    assert small.image.shape == rgba.shape  # a 2x model's result is resized back by default


@pytest.fixture(scope="module")
def identity_restorer():
    """A tiny M3UNet whose zero-initialised output layer makes one step the identity."""
    from test_library import FakeText
    from m3unet.restore.pipeline import Restorer
    from m3unet.core.unet import M3UNet, M3UNetConfig
    torch.manual_seed(0)
    model = M3UNet(M3UNetConfig(width=8, enc_blocks=[1, 1, 1], mid_blocks=1, dec_blocks=[1, 1, 1],
                                cond_dim=32, embed_dim=32, heads=1)).eval()
    return Restorer(model, FakeText())


def test_m3unet_in_the_pool_with_the_real_classifier_network(identity_restorer, spandrel_blur):
    """The whole path with M3UNet as a candidate and the (untrained) DegradationClassifier network."""
    torch.manual_seed(0)
    classifier = Classifier(DegradationClassifier())
    pool = Pool(identity_restorer, [PoolModel(spandrel_blur, "noise", "compact")], tile=64)
    noisy = add_noise(smooth_photo(80, 100), 0.05)
    plan = Plan([Step("noise", 0.5), Step("haze", 0.3, "m3unet", "clear the fog")])
    result = AutoRestorer(pool, classifier).run(noisy, plan=plan, budget=4)
    rep = result.reports[0]
    assert [a.model for a in rep.steps[0].attempts] == ["compact", "m3unet"]  # tagged models first
    assert [a.model for a in rep.steps[1].attempts] == ["m3unet"]
    assert 'M3UNet was told: "clear the fog"' in result.text()
    assert result.image.shape == noisy.shape
    # planned from the reading (the scene limits off: they may hide the untrained network's low light or haze)
    scene_limits_off = DEFAULT_POLICY.replace(lowlight_max_highlight=2.0, haze_min_black_point=0.0)
    auto = AutoRestorer(pool, classifier, policy=scene_limits_off).run(noisy, budget=2, seed=3)
    first = classifier(noisy)[0]
    assert auto.reports[0].first == Reading.of(first)
    assert auto.reports[0].plan.tasks[:len(first.labels)] == plan_from_finding(first).tasks
    assert len([s for s in auto.reports[0].steps if s.outcome != "skipped"]) <= 2


def test_under_the_classifiers_minimum_side_restore_is_blind_unless_planned(identity_restorer, spandrel_blur,
                                                                             tmp_path):
    """A classifier file records the smallest side its reading is trusted at (the shipped one reads
    most 64 px images as motion blurred, ``eval --small-sides``): smaller images get one blind pass,
    and the report says why; a given plan still runs; at or above the side it classifies."""
    from m3unet.auto.classifier import load_classifier, save_classifier
    torch.manual_seed(0)
    save_classifier(DegradationClassifier(), tmp_path / "c.safetensors", {"min_side": 96})
    classifier = Classifier(load_classifier(tmp_path / "c.safetensors"))
    assert classifier.min_side == 96 and Classifier(DegradationClassifier()).min_side == 0
    pool = Pool(identity_restorer, [PoolModel(spandrel_blur, "noise", "compact")], tile=64)
    small = add_noise(smooth_photo(64, 120), 0.05)
    res = AutoRestorer(pool, classifier).run(small)
    rep = res.reports[0]
    assert rep.stopped == Reason("blind", {"why": "small", "steps": 1, "noise": None, "min_side": 96})
    assert rep.steps == [] and rep.first is None and rep.size == (120, 64)
    assert "too small to judge reliably" in res.text()
    reading = classifier(small)[0]  # read anyway (the classifier node, the classify command): flagged
    assert "unreliable: 120x64 px is under the 96 px" in reading.report() and reading.to_dict()["note"]
    torch.testing.assert_close(res.image, small, atol=1e-5, rtol=0)  # the identity model, once
    planned = AutoRestorer(pool, classifier).run(small, plan=Plan([Step("noise", model="compact")]), rollback=False)
    assert [s.task for s in planned.reports[0].steps] == ["noise"]
    big = add_noise(smooth_photo(96, 120), 0.05)
    scene_limits_off = DEFAULT_POLICY.replace(lowlight_max_highlight=2.0, haze_min_black_point=0.0)
    assert (AutoRestorer(pool, classifier, policy=scene_limits_off).run(big, budget=1).reports[0].first
            == Reading.of(classifier(big)[0]))


def test_another_m3unet_checkpoint_in_the_pool(identity_restorer, tmp_path):
    """An M3UNet file given as a pool model is steered by the step's text (load_pool_model detects it)."""
    from m3unet.auto.pool import M3UNetPoolModel
    from m3unet.core.weights import save_model
    save_model(identity_restorer.model, tmp_path / "deblur.safetensors")
    second = load_pool_model(tmp_path / "deblur.safetensors", ["blur", "motion"])
    assert isinstance(second, M3UNetPoolModel) and second.name == "deblur" and second.tasks == ("blur", "motion")
    second.restorer._text_encoder = identity_restorer.text_encoder  # the fast stand-in encoder
    pool = Pool(identity_restorer, [second], tile=64)
    assert pool.candidates(Step("blur")) == ["deblur", "m3unet"] and pool.candidates(Step("noise")) == ["m3unet"]
    x = torch.rand(3, 40, 48)
    torch.testing.assert_close(pool.run("deblur", x, Step("blur", text="sharpen it")), x, atol=1e-5, rtol=0)
    assert "steered by the step's text" in pool.describe()[1]


def test_without_classifier_weights_restore_is_blind_or_follows_the_plan(identity_restorer, spandrel_blur,
                                                                         monkeypatch, tmp_path):
    monkeypatch.setattr(ar, "SHIPPED_CLASSIFIER", tmp_path / "missing.safetensors")
    assert ar.load_shipped_classifier() is None
    pool = Pool(identity_restorer, [PoolModel(spandrel_blur, "noise", "compact")], tile=64)
    noisy = add_noise(smooth_photo(64, 64), 0.05)
    blind = AutoRestorer(pool, None).run(noisy)
    assert blind.reports[0].stopped.code == "blind" and blind.reports[0].stopped.facts["why"] == "no_classifier"
    assert "no degradation classifier is installed; restored with one general M3UNet pass" in blind.text()
    torch.testing.assert_close(blind.image, noisy, atol=1e-5, rtol=0)  # the identity model
    planned = AutoRestorer(pool, None).run(noisy, plan=Plan([Step("noise", model="compact")]))
    assert planned.reports[0].steps[0].outcome == "applied"
    assert float(noise_sigma(planned.image)) < float(noise_sigma(noisy)) / 2
    from m3unet.auto.classifier import save_classifier
    save_classifier(DegradationClassifier(), tmp_path / "classifier.safetensors")
    monkeypatch.setattr(ar, "SHIPPED_CLASSIFIER", tmp_path / "classifier.safetensors")
    assert isinstance(ar.load_shipped_classifier(), Classifier)


def test_a_degradation_read_just_under_the_threshold_after_another_step_is_still_restored():
    """Hysteresis (KEEP_THRESHOLD): the measured case of a dark photo whose denoised version reads
    as low light at p = 0.36 only. The low-light step still runs; read as worse there, it is rolled
    back, the low light counts as not removed, and the retry (brighten first) wins."""
    from m3unet.auto.guards import pending
    KEEP_THRESHOLD = DEFAULT_POLICY.keep_threshold
    reader = ScriptedReader({0.30: {"noise": (0.9, 0.5), "lowlight": (0.99, 0.8)},  # input
                             0.40: {"lowlight": (0.36, 0.8)},                        # denoised: under 0.5
                             0.60: {"lowlight": (0.6, 0.6)},                         # then brightened: misread
                             0.50: {}})                                              # brightened first: clean
    pool = Pool(None, [PoolModel(lambda t: t + 0.1, "noise", "denoise"),
                       PoolModel(lambda t: t + 0.2, "lowlight", "brighten")])
    flat = torch.full((1, 32, 32, 3), 0.30)
    table = OrderTable({("noise", "lowlight"): 1.0})
    once = AutoRestorer(pool, reader, table, policy=ALL_RULES).run(flat, retry=False).reports[0]
    assert [(s.task, s.outcome) for s in once.steps] == [("noise", "kept"), ("lowlight", "rolled back")]
    assert once.final_labels == ["lowlight"] and once.removed == 1  # held, not counted as removed
    result = AutoRestorer(pool, reader, table, policy=ALL_RULES).run(flat)
    assert [(s.task, s.outcome) for s in result.reports[0].steps] == [("lowlight", "kept")]
    torch.testing.assert_close(result.image, flat + 0.2)
    # Under KEEP_THRESHOLD, or once a step for it was tried, a label is no longer held.
    f = reader(torch.full((1, 8, 8, 3), 0.40))[0]
    assert 0.36 >= KEEP_THRESHOLD and pending(f, ["lowlight"], set()) == ["lowlight"]
    assert pending(f, ["lowlight"], {"lowlight"}) == [] and pending(f, [], set()) == []
    reader.script[0.40] = {"lowlight": (KEEP_THRESHOLD - 0.05, 0.8)}
    gone = AutoRestorer(pool, reader, table, policy=ALL_RULES).run(flat).reports[0]
    assert [(s.task, s.outcome) for s in gone.steps] == [("noise", "kept")] and gone.stopped.code == "clean"


def test_pool_sampler_steps_per_task_unless_fixed():
    """An M3UNet pass of the pool takes TASK_STEPS sampler steps for its task (2 for noise and JPEG,
    1 otherwise) unless the caller fixes the steps; the fixed orders of `eval --auto` do the same."""
    from m3unet.evaluation.orders import m3unet_runner
    from m3unet.auto.plan import Step
    from m3unet.auto.pool import Pool
    TASK_STEPS = DEFAULT_POLICY.task_steps

    class Recorder:
        def __init__(self):
            self.steps = []

        def restore(self, image, text="", steps=1, seed=0, tile=None, progress=None, **kw):
            self.steps.append(steps)
            return image

    assert TASK_STEPS == {"noise": 2, "jpeg": 2}
    x = torch.rand(3, 16, 16)
    rec = Recorder()
    for task in ("noise", "jpeg", "blur", "haze"):
        Pool(rec).run("m3unet", x, Step(task))
    Pool(rec, steps=3).run("m3unet", x, Step("blur"))
    assert rec.steps == [2, 2, 1, 1, 3]
    rec.steps.clear()
    run = m3unet_runner(rec, steps=None)
    run(x, "remove the noise", "noise"), run(x, "", ""), run(x, "sharpen", "blur")
    m3unet_runner(rec)(x, "remove the noise", "noise")
    assert rec.steps == [2, 1, 1, 1]


class _FixedReader:
    """A classifier stand-in: the first image reads as ``first``, every later one as ``after``."""

    def __init__(self, first: Finding, after: Finding):
        self.readings = [first]
        self.after = after

    def __call__(self, image):
        return [self.readings.pop(0) if self.readings else self.after for _ in range(image.shape[0])]


class _ConstEstimator(torch.nn.Module):
    """A blur estimator stand-in that reads every crop as (sigma px, noise 1/255)."""

    def __init__(self, sigma: float, noise: float):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.value = torch.tensor([sigma, noise])

    def forward(self, crops):
        return self.value.expand(crops.shape[0], 2) + self.w


@pytest.mark.parametrize("sigma,noise,labels,runs", [
    (2.0, 2.0, {"motion": 0.4, "blur": 0.3, "lowres": 0.3, "noise": 0.2}, True),  # blur-like + Gaussian reading
    (0.8, 2.0, {"lowres": 0.3}, False),                                # too slight for the estimator
    (2.0, 20.0, {"blur": 0.5}, False),                                 # too noisy to deconvolve
    (2.0, 2.0, {"noise": 0.5}, False),                                 # the classifier sees no blur
])
def test_kernel_deblur_runs_first_when_classifier_and_estimator_agree(sigma, noise, labels, runs):
    from m3unet.auto.deblur import KernelDeblur
    from m3unet.training.synthesis import convolve, gaussian_kernel
    calls = []

    class Recorder:
        def restore(self, image, text="", steps=1, seed=0, tile=512, progress=None):
            calls.append(text)
            return image.clone()

    tool = KernelDeblur(_ConstEstimator(sigma, noise), Recorder())
    pool = Pool(Recorder(), [tool])
    x = chw(smooth_photo(96, 96))
    blurred = convolve(x, gaussian_kernel(2.0)).clamp(0, 1)
    reader = _FixedReader(finding(**labels), finding())
    result = AutoRestorer(pool, reader, OrderTable()).run(blurred.permute(1, 2, 0)[None], budget=3)
    rep = result.reports[0]
    if runs:
        assert rep.plan.tasks == ["blur", "noise"]  # the blur-like steps become one kernel-deblur step, first
        step = rep.steps[0]
        assert (step.task, step.chosen, step.outcome) == ("blur", "kernel-deblur", "kept")
        assert step.reason.code == "defocus" and set(step.reason.facts["labels"]) == set(labels) - {"noise"}
        assert (step.reason.facts["sigma"], step.reason.facts["noise"]) == (2.0, noise)
        assert "out-of-focus blur of 2.0 px: it was deconvolved" in result.text()
        assert calls[0] == "remove the light noise"  # the clean-up pass after the deconvolution
        assert psnr(chw(result.image), x) > psnr(blurred, x) + 3  # the deconvolution really ran
    else:
        assert "kernel-deblur" not in [s.chosen for s in rep.steps]
        assert all(st.model != "kernel-deblur" for st in rep.plan.steps)


def test_a_down_sampled_reading_is_deconvolved_by_part_of_the_estimate():
    """resampled_sigma_scale: where the gate opens on low resolution without blur, the deconvolution
    uses that share of the estimated sigma and the report says why; a blur reading keeps the estimate."""
    from m3unet.auto.deblur import KernelDeblur
    from m3unet.auto.guards import reads_resampled
    from m3unet.auto.policy import DEFAULT_POLICY
    from m3unet.training.synthesis import convolve, gaussian_kernel

    class Same:
        def restore(self, image, text="", steps=1, seed=0, tile=512, progress=None):
            return image.clone()

    x = chw(smooth_photo(96, 96))
    blurred = convolve(x, gaussian_kernel(2.0)).clamp(0, 1).permute(1, 2, 0)[None]
    policy = DEFAULT_POLICY.replace(resampled_sigma_scale=0.75)
    outputs = {}
    for name, labels in (("lowres", {"lowres": 0.9}), ("blur", {"lowres": 0.9, "blur": 0.9})):
        pool = Pool(Same(), [KernelDeblur(_ConstEstimator(2.0, 1.0), Same())])
        result = AutoRestorer(pool, _FixedReader(finding(**labels), finding()), OrderTable(), policy=policy).run(
            blurred, budget=3)
        step = result.reports[0].steps[0]
        assert (step.task, step.chosen) == ("blur", "kernel-deblur")
        outputs[name] = (step.reason.facts, result.text(), result.image)
    facts, text, image = outputs["lowres"]
    assert facts["sigma"] == 1.5 and facts["scale"] == 0.75 and "down-sampled" in text and "0.75" in text
    facts_blur, text_blur, image_blur = outputs["blur"]
    assert facts_blur["sigma"] == 2.0 and "scale" not in facts_blur and "out-of-focus blur of 2.0 px" in text_blur
    assert not torch.equal(image, image_blur)  # the milder deconvolution really ran
    assert reads_resampled(finding(lowres=0.9)) and not reads_resampled(finding(lowres=0.9, blur=0.9))
    assert not reads_resampled(None)


def test_under_the_minimum_side_the_blur_estimator_alone_decides(identity_restorer):
    """Under the classifier's minimum side (or without a classifier) the estimator's reading alone
    decides: a Gaussian blur it can undo is deconvolved (the report says so), else one blind pass."""
    from m3unet.auto.deblur import KernelDeblur
    from m3unet.training.synthesis import convolve, gaussian_kernel
    x = chw(smooth_photo(64, 120))
    blurred = convolve(x, gaussian_kernel(2.0)).clamp(0, 1).permute(1, 2, 0)[None]
    classifier = Classifier(DegradationClassifier(), min_side=96)
    for reading, deconvolved in [((2.0, 1.0), True), ((0.9, 1.0), False), ((2.0, 30.0), False)]:
        pool = Pool(identity_restorer, [KernelDeblur(_ConstEstimator(*reading), identity_restorer)], tile=64)
        for clf in (classifier, None):
            rep = AutoRestorer(pool, clf).run(blurred).reports[0]
            if deconvolved:
                assert [(s.task, s.chosen, s.outcome) for s in rep.steps] == [("blur", "kernel-deblur", "applied")]
                assert rep.stopped.code == "estimator_decided" and rep.steps[0].reason.facts["sigma"] == 2.0
            else:
                assert rep.steps == [] and rep.stopped.code == "blind"


class _StepsRecorder:
    """A Restorer stand-in that returns its input and records each pass's sampler steps."""

    def __init__(self):
        self.steps: list[int] = []

    def restore(self, image, text="", steps=1, **_):
        self.steps.append(steps)
        return image.clone()


def test_under_the_minimum_side_a_noisy_reading_gives_the_blind_pass_a_noise_steps_count():
    """Under the classifier's minimum side the blind pass takes a noise step's sampler steps
    (TASK_STEPS, 2) when the blur estimator reads noise (SMALL_NOISE and over), else 1; the report
    says which and why; the sampler's own ``steps`` (Pool.steps) still wins."""
    from m3unet.auto.deblur import KernelDeblur
    SMALL_NOISE, TASK_STEPS = DEFAULT_POLICY.small_noise, DEFAULT_POLICY.task_steps
    small = smooth_photo(64, 120)
    classifier = Classifier(DegradationClassifier(), min_side=96)
    for noise, expected in [(SMALL_NOISE + 14, TASK_STEPS["noise"]), (SMALL_NOISE - 4, 1)]:
        rec = _StepsRecorder()
        pool = Pool(rec, [KernelDeblur(_ConstEstimator(0.3, noise), rec)], tile=64)
        rep = AutoRestorer(pool, classifier).run(small).reports[0]
        assert rec.steps == [expected] and rep.steps == [] and rep.stopped.code == "blind"
        assert rep.stopped.facts["steps"] == expected and rep.stopped.facts["noise"] == noise
        rec.steps.clear()
        fixed = AutoRestorer(Pool(rec, [KernelDeblur(_ConstEstimator(0.3, noise), rec)], steps=3), classifier)
        rep = fixed.run(small).reports[0]
        assert rec.steps == [3] and rep.stopped.facts["steps"] == 3  # the reading did not decide
    rec = _StepsRecorder()  # no estimator in the pool: one step
    AutoRestorer(Pool(rec), classifier).run(small)
    assert rec.steps == [1]


def test_under_the_minimum_side_an_enlarged_reading_goes_to_the_small_print_specialist():
    """A small image the blur estimator reads as enlarged (soft, with bicubic ringing, no noise) is
    restored by the small-print specialist (M3UNetPoolModel.small), which is never a candidate of a
    classified step; other readings do not reach it. With the shipped ``small_print_routes`` print
    takes neither the kernel-aware deblur nor the blind pass: those readings leave the line as it is."""
    ENLARGED_BLOCKY = DEFAULT_POLICY.enlarged_blocky
    from m3unet.auto.deblur import BLOCKY, KernelDeblur
    from m3unet.auto.pool import M3UNetPoolModel
    from m3unet.training.textimage import render_line
    small = torch.from_numpy(render_line("Harbour Road 17", "DejaVuSans.ttf", 18)).float()[None] / 255
    assert small.shape[1] < 96  # under the classifier's minimum side below
    classifier = Classifier(DegradationClassifier(), min_side=96)
    spec = M3UNetPoolModel(_FlatRestorer(0.30), ("lowres",), "m3unet-smallprint", small=True)

    class Tool(KernelDeblur):  # the reading is fixed: blockiness is measured on the image otherwise
        def __init__(self, sigma, noise, blocky):
            super().__init__(_ConstEstimator(sigma, noise), _FlatRestorer(0.10))
            self.fixed = (sigma, noise, blocky)

        def reading(self, x, sigma=None, noise=None):
            from m3unet.auto.deblur import BlurEstimate
            return BlurEstimate(*self.fixed)

    inside = (BLOCKY + ENLARGED_BLOCKY) / 2
    for reading, expected in [((1.8, 0.0, inside), 0.30),  # enlarged: the specialist
                              ((1.8, 0.0, ENLARGED_BLOCKY + 0.5), 0.20),  # JPEG blocks: the blind pass
                              ((0.5, 0.0, inside), 0.20),  # sharp: the blind pass
                              ((1.8, 20.0, inside), 0.20),  # noisy: the blind pass
                              ((1.8, 0.0, BLOCKY - 0.1), 0.10)]:  # no ringing: the kernel-aware deblur
        pool = Pool(_FlatRestorer(0.20), [Tool(*reading), spec])
        every_route = DEFAULT_POLICY.replace(small_print_routes=("deblur", "enlarged_print", "blind"))
        res = AutoRestorer(pool, classifier, policy=every_route).run(small)
        assert float(res.image.mean()) == pytest.approx(expected, abs=1e-6), reading
        shipped = AutoRestorer(pool, classifier).run(small)  # print takes only the specialist
        assert float(shipped.image.mean()) == pytest.approx(expected if expected == 0.30 else float(small.mean()),
                                                            abs=1e-6), reading
        if expected == 0.30:
            rep = res.reports[0]
            assert [(s.task, s.chosen) for s in rep.steps] == [("lowres", "m3unet-smallprint")]
            assert rep.steps[0].reason.code == "enlarged_print"
            # A photo with the same reading does not look like print: the blind pass.
            photo = smooth_photo(64, 120)
            assert float(AutoRestorer(pool, classifier, policy=every_route).run(photo).image.mean()) == \
                pytest.approx(0.20, abs=1e-6)
    pool = Pool(_FlatRestorer(0.20), [spec])
    assert pool.candidates(Step("lowres")) == ["m3unet"] and pool.candidates(Step("lowres"), alone=True) == ["m3unet"]


def test_small_print_routes_leave_print_alone_where_a_route_is_not_listed():
    """Under the minimum side, an image that looks like print takes only the routes listed in
    ``small_print_routes``; otherwise it comes back as it is, and the report says so. A photo under
    the minimum side is not print: its blind pass runs whatever the entry says."""
    from m3unet.auto.report import render
    from m3unet.training.textimage import render_line
    line = torch.from_numpy(render_line("Harbour Road 17", "DejaVuSans.ttf", 18)).float()[None] / 255
    classifier = Classifier(DegradationClassifier(), min_side=96)
    pool = Pool(_FlatRestorer(0.20))  # no estimator: every small image takes the blind pass
    listed = AutoRestorer(pool, classifier, policy=DEFAULT_POLICY.replace(small_print_routes=("blind",))).run(line)
    assert float(listed.image.mean()) == pytest.approx(0.20, abs=1e-6) and listed.reports[0].stopped.code == "blind"
    assert "blind" not in DEFAULT_POLICY.small_print_routes  # as shipped, print is left as it is here
    for routes in ((), ("deblur", "enlarged_print"), DEFAULT_POLICY.small_print_routes):
        auto = AutoRestorer(pool, classifier, policy=DEFAULT_POLICY.replace(small_print_routes=routes))
        res = auto.run(line)
        rep = res.reports[0]
        assert torch.equal(res.image, line), routes  # left exactly as it is
        assert rep.steps == [] and rep.stopped.code == "print_left" and "small_print_routes" in rep.rules
        assert "looks like print" in render(rep)
        photo = smooth_photo(64, 120)
        assert float(auto.run(photo).image.mean()) == pytest.approx(0.20, abs=1e-6)
        off = AutoRestorer(pool, classifier, policy=DEFAULT_POLICY.replace(small_print_routes=routes,
                                                                           print_guard=False))
        assert float(off.run(line).image.mean()) == pytest.approx(0.20, abs=1e-6)  # the guard is off


class _FlatRestorer:
    """A Restorer stand-in whose every pass returns a flat image of one grey level."""

    def __init__(self, level: float):
        self.level = level

    def restore(self, image, **_):
        return torch.full_like(image, self.level)


def test_a_solo_specialist_serves_only_images_with_its_degradation_alone():
    """A specialist fine-tuned on one degradation (it forgets the others) is the only candidate where
    that degradation is all the classifier reads, and is never tried on a mix."""
    from m3unet.auto.pool import M3UNetPoolModel
    spec = M3UNetPoolModel(_FlatRestorer(0.30), ("jpeg",), "m3unet-jpeg", solo=True)
    pool = Pool(_FlatRestorer(0.20), [spec])
    assert pool.candidates(Step("jpeg")) == ["m3unet"]
    assert pool.candidates(Step("jpeg"), alone=True) == ["m3unet-jpeg"]
    assert pool.candidates(Step("noise"), alone=True) == ["m3unet"]
    user = Pool(_FlatRestorer(0.20), [spec, PoolModel(lambda t: t, "jpeg", "scunet")])
    assert user.candidates(Step("jpeg"), alone=True) == ["scunet", "m3unet-jpeg"]  # user models still compete
    assert user.candidates(Step("jpeg")) == ["scunet", "m3unet"]
    assert pool.candidates(Step("jpeg", model="m3unet-jpeg")) == ["m3unet-jpeg"]  # named in a plan: always
    assert "only degradation read" in spec.describe()
    reader = ScriptedReader({0.50: {"jpeg": (0.9, 0.8)},                       # JPEG alone
                             0.60: {"jpeg": (0.9, 0.8), "noise": (0.9, 0.5)},  # JPEG and noise
                             0.30: {}, 0.20: {}})
    alone = AutoRestorer(pool, reader, OrderTable(), policy=ALL_RULES).run(torch.full((1, 32, 32, 3), 0.50)).reports[0]
    assert [(s.task, s.chosen, [a.model for a in s.attempts]) for s in alone.steps] == \
        [("jpeg", "m3unet-jpeg", ["m3unet-jpeg"])]
    assert alone.steps[0].reason.code == "specialist_alone" and alone.stopped.code == "clean"
    off = AutoRestorer(pool, reader, OrderTable(), policy=RestorePolicy(solo_specialists=False))
    assert off.run(torch.full((1, 32, 32, 3), 0.50)).reports[0].steps[0].chosen == "m3unet"  # the rule switched off
    mixed = AutoRestorer(pool, reader, OrderTable(), policy=ALL_RULES).run(torch.full((1, 32, 32, 3), 0.60)).reports[0]
    assert all("m3unet-jpeg" not in [a.model for a in s.attempts] for s in mixed.steps)
    assert mixed.steps[0].chosen == "m3unet" and mixed.stopped.code == "clean"
    # Denoised first, JPEG then reads alone: the image is no longer as given, the specialist waits.
    reader.script.update({0.20: {"jpeg": (0.9, 0.8)}, 0.40: {}})
    pool = Pool(_FlatRestorer(0.20), [spec, PoolModel(lambda t: torch.full_like(t, 0.40), "jpeg", "deblock")])
    table = OrderTable({("noise", "jpeg"): 1.0})
    later = AutoRestorer(pool, reader, table, policy=ALL_RULES).run(torch.full((1, 32, 32, 3), 0.60), retry=False).reports[0]
    assert [(s.task, s.outcome) for s in later.steps][:2] == [("noise", "kept"), ("jpeg", "kept")]
    assert [a.model for a in later.steps[1].attempts] == ["deblock", "m3unet"]


def test_shipped_specialists_share_the_main_text_encoder_and_device(identity_restorer):
    from m3unet.auto.pool import SMALL_SPECIALISTS, SPECIALISTS, M3UNetPoolModel, shipped_specialists, shipped_tools
    from m3unet.core.weights import DEFAULT_WEIGHTS
    assert shipped_specialists(None) == [] and shipped_tools(None) == []
    specs = shipped_specialists(identity_restorer)
    table = {**SPECIALISTS, **SMALL_SPECIALISTS}
    assert [m.name + ".safetensors" for m in specs] == [f for f in table if (DEFAULT_WEIGHTS.parent / f).is_file()]
    assert specs, "the shipped JPEG specialist is missing from weights/"
    for m in specs:
        file = m.name + ".safetensors"
        assert isinstance(m, M3UNetPoolModel) and m.tasks == table[file]
        assert (m.solo, m.small) == ((False, True) if file in SMALL_SPECIALISTS else (True, False))
        assert m.restorer.text_encoder is identity_restorer.text_encoder
    assert [type(m).__name__ for m in shipped_tools(identity_restorer, kernel_deblur=False, policy=ALL_RULES)] == \
        ["M3UNetPoolModel"] * len(specs)
    # A policy without solo specialists leaves the single-task ones out (it does not use them).
    assert [m.name for m in shipped_tools(identity_restorer, kernel_deblur=False,
                                          policy=RestorePolicy(solo_specialists=False))] == \
        [m.name for m in specs if m.small]
    assert shipped_tools(identity_restorer, kernel_deblur=False, specialists=False) == []
    from m3unet.auto.pool import is_shipped_default
    assert is_shipped_default(None) and is_shipped_default(DEFAULT_WEIGHTS)
    assert not is_shipped_default(DEFAULT_WEIGHTS.parent / "m3unet-jpeg.safetensors")
    # beside another main model the specialists stay out (they are fine-tuned from the default)
    other = DEFAULT_WEIGHTS.parent / "m3unet-deblur.safetensors"
    assert shipped_tools(identity_restorer, kernel_deblur=False, model_path=other) == []
    assert len(shipped_tools(identity_restorer, kernel_deblur=False, model_path=DEFAULT_WEIGHTS,
                              policy=ALL_RULES)) == len(specs)


def test_looks_like_print_wants_paper_and_ink():
    """The small-print route's histogram test: a rendered line passes, down-sampled x4 too; a smooth
    photo, a blank page and a low-contrast page do not."""
    from m3unet.training import synthesis as deg
    from m3unet.auto.guards import looks_like_print
    from m3unet.training.textimage import render_line
    line = torch.from_numpy(render_line("Serial no. 73-0519-B", "DejaVuSerif.ttf", 18)).permute(2, 0, 1).float() / 255
    assert looks_like_print(line)
    assert looks_like_print(deg.apply_one(line, deg.make("lowres", 1.0, scale=4.0)))
    assert not looks_like_print(smooth_photo(64, 120)[0].permute(2, 0, 1))
    assert not looks_like_print(torch.ones(3, 40, 200))
    assert not looks_like_print(0.8 + 0.1 * line)  # faint: ink contrast 0.1



class _BrightAsHaze:
    """A classifier stand-in that reads any bright image as hazy, as the real one reads paper."""

    def __call__(self, image: torch.Tensor) -> list:
        from m3unet.auto.classifier import LABELS, Finding
        out = []
        for im in image:
            p = 1.0 if float(im[..., :3].float().mean()) > 0.5 else 0.0
            out.append(Finding({k: 0.0 for k in LABELS} | {"haze": p}, {k: 0.0 for k in LABELS} | {"haze": 0.6 * p}))
        return out


def test_on_print_the_automatic_plan_does_not_read_haze_low_light_or_low_resolution():
    """Paper reads as haze to the photo-trained classifier: on an image that looks like print the
    automatic plan leaves haze, low light and low resolution out (and says so); a bright photo still gets its haze
    step, and a plan given by the user still runs on print."""
    from m3unet.training.textimage import render_line
    page = torch.from_numpy(render_line("Received with thanks", "DejaVuSans.ttf", 24)).float()[None] / 255
    photo = 0.55 + 0.4 * smooth_photo(64, 120)
    auto = AutoRestorer(Pool(_FlatRestorer(0.20)), _BrightAsHaze())
    res = auto.run(page)
    assert torch.equal(res.image, page)  # nothing read: returned as given
    assert res.reports[0].first.ignored == ["haze", "lowlight", "lowres"] and "it looks like print" in res.text()
    assert [s.task for s in res.reports[0].steps] == []
    res = auto.run(photo)
    assert [(s.task, s.outcome) for s in res.reports[0].steps] == [("haze", "kept")]
    assert float(res.image.mean()) == pytest.approx(0.20, abs=1e-6)
    res = auto.run(page, Plan([Step("haze", 0.5)]))
    assert [(s.task, s.outcome) for s in res.reports[0].steps] == [("haze", "kept")]


# ---------------------------------------------------------------------------- joint steps
def test_joint_plan_merges_camera_degradations_and_round_trips():
    """Two or more of noise / blur / motion / JPEG / low resolution become one step where the first
    of them would be; haze and low light keep steps of their own. The plan JSON carries it as
    ``also`` and is validated like the rest."""
    assert DEFAULT_POLICY.joint_tasks == ("noise", "blur", "motion", "jpeg", "lowres")
    table = OrderTable({("noise", "haze"): 1.0, ("haze", "jpeg"): 1.0, ("noise", "jpeg"): 1.0})
    plan = plan_for({"noise": 0.7, "jpeg": 0.3, "haze": 0.5}, table)
    assert [s.tasks for s in plan.steps] == [["noise", "jpeg"], ["haze"]]
    assert plan.tasks == ["noise", "jpeg", "haze"]
    joint = plan.steps[0]
    assert joint.also == {"jpeg": 0.3} and joint.text == "remove the heavy noise, then remove the light JPEG artifacts"
    assert "noise (heavy, 0.70) + jpeg (light, 0.30)" in plan.summary()
    assert Plan.from_json(plan.to_json()) == plan
    assert "also" not in json.loads(plan.to_json())["steps"][1]  # single-task steps: JSON as before
    # The caller can narrow what may be joined (a doubtful reading, a user's model for a task).
    assert [s.tasks for s in plan_for({"noise": 0.7, "jpeg": 0.3}, table, joint=("noise",)).steps] == \
        [["noise"], ["jpeg"]]
    assert Plan.from_json('[{"task": "noise", "also": ["jpeg", "blur"]}]').steps[0].also == {"jpeg": 0.5, "blur": 0.5}
    # From a reading, a joint step's tasks are sized by their expected severity (p x severity), so a
    # doubtful one is told as lighter; single steps keep the severity read.
    f = Finding({k: {"noise": 0.95, "blur": 0.6, "haze": 0.6}.get(k, 0.01) for k in LABELS},
                {k: {"noise": 0.8, "blur": 0.9, "haze": 0.9}.get(k, 0.0) for k in LABELS})
    steps = plan_from_finding(f, table).steps
    assert [(s.tasks, s.strength, s.also) for s in steps] == [(["noise", "blur"], 0.76, {"blur": 0.54}),
                                                              (["haze"], 0.9, {})]
    # Narrowing a joint step to what is left keeps it or drops it whole.
    assert joint.only(["noise", "jpeg", "haze"]) is joint
    assert joint.only(["jpeg"]) == Step("jpeg", 0.3, "auto", "")
    assert joint.only(["haze"]) is None
    triple = Step("noise", 0.5, also={"jpeg": 0.3, "blur": 0.4})  # as the defocus step narrows a plan
    assert triple.only(t for t in triple.tasks if t != "blur") == Step("noise", 0.5, "auto", "", {"jpeg": 0.3})


@pytest.mark.parametrize("also, message", [
    ('{"noise": 0.5}', "also names 'noise'; choose other tasks"),
    ('{"fog": 0.5}', "also names 'fog'"),
    ('{"jpeg": 2}', "the strength of jpeg in also must be a number between 0 and 1"),
    ('"jpeg"', "also must map further tasks to strengths"),
])
def test_joint_step_errors_name_the_step(also, message):
    with pytest.raises(PlanError) as info:
        Plan.from_json(f'[{{"task": "noise", "also": {also}}}]')
    assert message in str(info.value) and "plan step 1 (noise)" in str(info.value)


class _TextRecorder:
    """A Restorer stand-in that moves the image to the next grey level and records texts and steps."""

    def __init__(self, level: float):
        self.level, self.texts, self.steps = level, [], []

    def restore(self, image, text="", steps=1, **_):
        self.texts.append(text)
        self.steps.append(steps)
        return torch.full_like(image, self.level)


def test_auto_restore_runs_one_joint_pass_for_camera_degradations():
    """A reading of noise and JPEG gives one M3UNet pass told about both, with the most sampler steps
    of its tasks; its drop is the sum of both; a task a user's image model serves is not joined, so
    that model competes; haze is not joined."""
    from m3unet.auto.pool import steps_for
    assert steps_for(Step("blur", also={"jpeg": 0.5}), None) == 2 and steps_for(Step("blur"), None) == 1
    e = effect(finding(noise=0.5, jpeg=0.5, haze=0.5), finding(haze=0.5), ["noise", "jpeg"])
    assert e.own_drop == pytest.approx(2 * (0.9 * 1.5 / 2 - 0.01 / 2)) and e.side_rise == pytest.approx(0.0)
    reader = ScriptedReader({0.60: {"noise": (0.9, 0.7), "jpeg": (0.95, 0.3)}, 0.20: {}})
    rec = _TextRecorder(0.20)
    rep = AutoRestorer(Pool(rec), reader, OrderTable({("noise", "jpeg"): 1.0})).run(
        torch.full((1, 32, 32, 3), 0.60)).reports[0]
    assert [(s.task, s.outcome, s.chosen) for s in rep.steps] == [("noise+jpeg", "kept", "m3unet")]
    # Sized by expected severity (p x severity): noise 0.9 x 0.7 = 0.63 (moderate), JPEG 0.95 x 0.3.
    assert rec.texts == ["remove the moderate noise, then remove the light JPEG artifacts"] and rec.steps == [2]
    assert rep.steps[0].reason.code == "joint_pass" and rep.stopped.code == "clean"
    assert rep.plan.steps[0].strength == 0.63 and rep.plan.steps[0].also == {"jpeg": 0.285}
    # Haze read too: its own step after the joint one (haze is last in the fallback order).
    reader.script[0.60]["haze"] = (0.9, 0.5)
    rec = _TextRecorder(0.20)
    rep = AutoRestorer(Pool(rec), reader, OrderTable({("noise", "jpeg"): 1.0})).run(
        torch.full((1, 32, 32, 3), 0.60)).reports[0]
    assert [s.tasks for s in rep.plan.steps] == [["noise", "jpeg"], ["haze"]]
    assert [(s.task, s.outcome) for s in rep.steps] == [("noise+jpeg", "kept")]  # the joint pass left it clean
    assert rep.stopped.code == "clean" and len(rec.texts) == 1
    # A user's denoiser in the pool: noise is its own step, where it competes with M3UNet.
    pool = Pool(_TextRecorder(0.20), [PoolModel(lambda t: torch.full_like(t, 0.20), "noise", "scunet")])
    rep = AutoRestorer(pool, reader, OrderTable({("noise", "jpeg"): 1.0})).run(
        torch.full((1, 32, 32, 3), 0.60)).reports[0]
    assert [s.tasks for s in rep.plan.steps][0] == ["noise"]
    assert [a.model for a in rep.steps[0].attempts] == ["scunet", "m3unet"]


# ---------------------------------------------------------------------------- exposure guard
class _DarkReader:
    """A classifier stand-in that reads an image whose mean is under 0.5 as low light."""

    def __call__(self, image: torch.Tensor) -> list:
        out = []
        for im in image:
            p = 0.9 if float(im[..., :3].float().mean()) < 0.5 else 0.0
            out.append(Finding({k: 0.0 for k in LABELS} | {"lowlight": p}, {k: 0.0 for k in LABELS} | {"lowlight": 0.5 * p}))
        return out


def _brighten(t: torch.Tensor) -> torch.Tensor:
    return (t * 2.5).clamp(0, 1)


def test_a_brightening_step_that_clips_a_normally_exposed_photo_is_rolled_back():
    """A low-light reading on a photo that is not dark brings a brightening step that drives its
    highlights into saturation: that step is rolled back (saying why), even though the reading
    improved; a truly dark photo brightened by the same model keeps its step; with rollback off
    the step stays."""
    assert clipped_share(torch.full((3, 4, 4), 0.99)) == 1.0 and clipped_share(torch.zeros(1, 3, 4, 4)) == 0.0
    pool = Pool(None, [PoolModel(_brighten, "lowlight", "brighten")])
    auto = AutoRestorer(pool, _DarkReader(), policy=ALL_RULES)
    normal = smooth_photo() * torch.tensor([0.55, 0.55, 0.9])  # mean under 0.5, highlights near 0.9
    dark = smooth_photo() * 0.45
    res = auto.run(normal)
    step = res.reports[0].steps[0]
    assert (step.task, step.outcome) == ("lowlight", "rolled back"), res.text()
    assert step.reason.code == "overexposed" and step.reason.facts["clip_rise"] > DEFAULT_POLICY.exposure_clip_rise
    assert "the photo was not dark" in res.text()
    assert torch.equal(res.image, normal)
    res = auto.run(dark)
    assert [(s.task, s.outcome) for s in res.reports[0].steps] == [("lowlight", "kept")], res.text()
    assert clipped_share(res.image.permute(0, 3, 1, 2)) == 0.0
    res = auto.run(normal, Plan([Step("lowlight", 0.5)]))  # a plan given by the user: guarded too
    assert [s.outcome for s in res.reports[0].steps] == ["rolled back"]
    res = auto.run(normal, rollback=False)
    assert [s.outcome for s in res.reports[0].steps] == ["kept"]


def test_a_solo_specialist_never_serves_print():
    """The photo-trained classifier reads clean text pages as JPEG: there the JPEG specialist lost 2.5-4.4 dB
    on the validation suite (docs/rules.md), so print goes to M3UNet, photos to the specialist."""
    from m3unet.auto.pool import M3UNetPoolModel
    from m3unet.training.textimage import render_line

    class JpegUntilFlat:  # reads JPEG on anything textured, nothing on the flat outputs below
        def __call__(self, image):
            return [Finding({k: (0.9 if k == "jpeg" and float(x.float().std()) > 0.01 else 0.01) for k in LABELS},
                            {k: (0.8 if k == "jpeg" else 0.0) for k in LABELS}) for x in image]

    spec = M3UNetPoolModel(_FlatRestorer(0.30), ("jpeg",), "m3unet-jpeg", solo=True)
    auto = AutoRestorer(Pool(_FlatRestorer(0.20), [spec]), JpegUntilFlat(), OrderTable())
    page = torch.from_numpy(render_line("Received with thanks", "DejaVuSans.ttf", 24)).float()[None] / 255
    assert auto.run(page).reports[0].steps[0].chosen == "m3unet"
    assert auto.run(smooth_photo(64, 120)).reports[0].steps[0].chosen == "m3unet-jpeg"
