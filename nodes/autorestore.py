"""M3UNetAutoRestore: classify -> plan -> best pool model per step -> re-classify (no person needed)."""
from __future__ import annotations

import logging

import comfy.model_management as model_management
import comfy.utils
from comfy_api.latest import io

from ..m3unet.auto import DEFAULT_BUDGET, MAX_BUDGET, SHIPPED_CLASSIFIER, AutoProgress, load_shipped_classifier
from ..m3unet.restore import DEFAULT_TILE
from ..m3unet.auto import TASKS, PlanError, parse_plans
from ..m3unet.auto import DEFAULT_POLICY, M3UNetPoolModel, PoolError, PoolModel, build_auto_restorer
from .common import CATEGORY, FileCache, M3UNetHandle, M3UNetModel, file_fingerprint, manage_model
from .compat import schema, seed_input

log = logging.getLogger("m3unet")

POOL_SLOTS = 3
PROGRESS_STEPS = 1000  # the bar counts thousandths of the work known so far
_classifier_cache: FileCache = FileCache()


def shipped_classifier():
    """The shipped DegradationClassifier (cached per file fingerprint), or None if its file is missing."""
    if file_fingerprint(SHIPPED_CLASSIFIER) is None:
        return None
    return _classifier_cache.get(SHIPPED_CLASSIFIER, load_shipped_classifier)


def _pool_inputs() -> list:
    out = []
    for i in range(1, POOL_SLOTS + 1):
        out.append(io.UpscaleModel.Input(f"pool_model_{i}", optional=True, tooltip=(
            f"Optional model for the pool (from Load Upscale Model: Real-ESRGAN, SwinIR, NAFNet, SCUNet...). "
            f"It competes with M3UNet on the steps of the task chosen in pool_task_{i}; the one that leaves "
            "the least degradation (by the classifier) wins. A plan can also name it as "
            f"\"pool_model_{i}\".")))
        out.append(io.Combo.Input(f"pool_task_{i}", options=list(TASKS), default=TASKS[(i - 1) % len(TASKS)],
                                  optional=True, tooltip=f"The degradation pool_model_{i} removes."))
    out.append(M3UNetModel.Input("pool_m3unet", optional=True, tooltip=(
        "Optional second M3UNet checkpoint (a Load M3UNet Model node, e.g. m3unet-deblur.safetensors) "
        "that competes with the main model on the tasks in pool_m3unet_tasks, steered by the same "
        "restoration text. A plan can name it as \"pool_m3unet\".")))
    out.append(io.String.Input("pool_m3unet_tasks", default="blur, motion", optional=True, tooltip=(
        "The degradations pool_m3unet serves, comma-separated: " + ", ".join(TASKS) + ".")))
    return out


# the "leave" input: what the restore never acts on (the policy entry leave_alone)
LEAVE = {"nothing": (), "low light": ("lowlight",), "haze": ("haze",), "low light and haze": ("lowlight", "haze")}


def parse_tasks(text: str) -> list[str]:
    """``"blur, motion"`` -> ``["blur", "motion"]`` (raises PoolError naming unknown tasks)."""
    tasks = [t.strip() for t in str(text).replace(";", ",").split(",") if t.strip()]
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise PoolError(f"pool_m3unet_tasks: unknown task(s) {bad or '(none)'}; use a comma list of "
                        f"{', '.join(TASKS)}")
    return tasks


class M3UNetAutoRestore(io.ComfyNode):
    """Automatic restoration with the DegradationClassifier, the measured planner and a model pool."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="M3UNetAutoRestore",
            display_name="M3UNet Auto Restore",
            category=CATEGORY,
            search_aliases=["automatic restore", "auto fix photo", "restore old photo", "denoise", "deblur",
                            "enhance photo"],
            description=(
                "Restores without a person: the DegradationClassifier detects the degradations (noise, "
                "blur, motion blur, JPEG, low resolution, low light, haze), the planner orders the steps "
                "by measured evidence, each step tries M3UNet (steered by its restoration text) and any "
                "pool models wired in for that task and keeps the one that most reduces the remaining "
                "degradation; a step that makes things worse is rolled back. A defocus (Gaussian) blur "
                "that the blur estimator measures is deconvolved first (M3UNet Kernel Deblur), and where JPEG or noise is "
                "the only degradation read a shipped specialist (m3unet-jpeg, m3unet-noise) removes it; small enlarged "
                "print (under the classifier's minimum side, 96 px) goes to m3unet-smallprint. Stops when the image is "
                "clean or after the step budget; \"leave\" keeps low light or haze as they are (a night, low-key or misty "
                "photo). Outputs the image (same size, channels and batch), a "
                "report of what was done and why, and the plan as editable JSON."),
            inputs=[
                M3UNetModel.Input("model", tooltip="The model from Load M3UNet Model."),
                io.Image.Input("image", tooltip="Degraded image(s); a batch is restored image by image."),
                io.Int.Input("budget", default=DEFAULT_BUDGET, min=1, max=MAX_BUDGET, tooltip=(
                    "At most this many restoration steps per image (each step may try several models).")),
                seed_input("Seed of M3UNet's sampler. Its steps run deterministically (one step, no fresh "
                           "noise), so the same image gives the same result whatever the seed."),
                io.Boolean.Input("keep_larger", default=False, tooltip=(
                    "If a pool model upscales (2x, 4x...), return the larger size instead of resizing the "
                    "result back to the input's size.")),
                io.String.Input("plan", multiline=True, default="", optional=True, tooltip=(
                    "Empty: plan automatically from the classifier. Or a plan as JSON (copy the plan output "
                    "and edit it): {\"steps\": [{\"task\": \"noise\", \"strength\": 0.6, \"model\": \"auto\", "
                    "\"text\": \"\"}]}; model is auto, m3unet, pool_model_1..3 or pool_m3unet; tasks: "
                    + ", ".join(TASKS) + "; \"also\": {\"jpeg\": 0.3} makes one pass remove further tasks "
                    "(a joint step).")),
                *_pool_inputs(),
                io.Combo.Input("leave", options=list(LEAVE), default="nothing", optional=True, tooltip=(
                    "Degradations never to act on, whatever the classifier reads (automatic plans only). A dark, "
                    "low-key or misty photo can read as under-exposed or hazy; leave \"low light and haze\" to keep "
                    "its mood. The report says what was read and left.")),
            ],
            outputs=[
                io.Image.Output(display_name="IMAGE", tooltip="The restored image(s)."),
                io.String.Output(display_name="report", tooltip="What was detected, done and why, per image."),
                io.String.Output(display_name="plan_used", tooltip="The plan that ran, as JSON (editable: "
                                 "paste it into the plan input to run it again, or change it first)."),
            ],
        )

    @classmethod
    def validate_inputs(cls, plan: str = "", pool_m3unet_tasks: str = "blur, motion", leave: str = "nothing",
                        **kwargs):
        if isinstance(leave, str) and leave not in LEAVE:
            return f"leave: {leave!r} is not one of {', '.join(LEAVE)}"
        try:
            if isinstance(pool_m3unet_tasks, str):
                parse_tasks(pool_m3unet_tasks)
            if isinstance(plan, str) and plan.strip():  # empty: automatic; linked: checked when it runs
                parse_plans(plan)
        except (PlanError, PoolError) as e:
            return str(e)
        return True

    @classmethod
    def execute(cls, model: M3UNetHandle, image, budget: int, seed: int, keep_larger: bool, plan: str = "",
                leave: str = "nothing", **pool_inputs) -> io.NodeOutput:
        model_management.throw_exception_if_processing_interrupted()
        plans = parse_plans(plan or "", batch=image.shape[0])
        restorer = model.ready()
        models = []
        for i in range(1, POOL_SLOTS + 1):
            m = pool_inputs.get(f"pool_model_{i}")
            if m is not None:
                models.append(PoolModel(m, pool_inputs.get(f"pool_task_{i}") or TASKS[0], f"pool_model_{i}"))
        second = pool_inputs.get("pool_m3unet")
        if second is not None:
            tasks = parse_tasks(pool_inputs.get("pool_m3unet_tasks") or "blur, motion")
            models.append(M3UNetPoolModel(second.ready(), tasks, "pool_m3unet"))
        classifier = shipped_classifier()
        if classifier is None:
            log.warning("M3UNet Auto Restore: no DegradationClassifier weights at %s; restoring blind",
                        SHIPPED_CLASSIFIER)
        # The plan can grow or shrink while it runs (a step rolled back, a reading that changes), so the
        # bar shows the share of the work known so far, in thousandths, and never moves backwards.
        pbar = comfy.utils.ProgressBar(PROGRESS_STEPS)
        shown = 0

        def on_progress(p: AutoProgress) -> None:
            nonlocal shown
            shown = max(shown, min(PROGRESS_STEPS - 1, int(PROGRESS_STEPS * p.done / max(p.total, 1e-9))))
            pbar.update_absolute(shown, PROGRESS_STEPS)
            model_management.throw_exception_if_processing_interrupted()

        device = model_management.get_torch_device()
        movable = [m.model for m in models if isinstance(m, PoolModel) and hasattr(m.model, "to")]
        for m in movable:  # like ImageUpscaleWithModel: on the torch device while it runs
            m.to(device)
        try:
            # The kernel-aware deblur and the shipped specialists join the pool when their weights
            # are there; every network the factory loads goes through ComfyUI's model management.
            auto = build_auto_restorer(restorer, model_path=model.path, classifier=classifier, pool_models=models,
                                       tile=DEFAULT_TILE, manage=manage_model,
                                       policy=DEFAULT_POLICY.replace(leave_alone=LEAVE[leave or "nothing"]))
            result = auto.run(image, plans, budget=budget, seed=seed, upscale=keep_larger, progress=on_progress)
        finally:
            for m in movable:
                m.to("cpu")
        pbar.update_absolute(PROGRESS_STEPS, PROGRESS_STEPS)
        return io.NodeOutput(result.image.to(model_management.intermediate_device()), result.text(),
                             result.plan_json())
