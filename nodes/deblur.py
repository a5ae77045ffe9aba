"""Kernel Deblur: estimate the Gaussian (defocus) blur, deconvolve it, clean up with M3UNet."""
from __future__ import annotations


import comfy.model_management as model_management
from comfy_api.latest import io, ui

from ..m3unet.auto import MAX_SIGMA, KernelDeblur, shipped_estimator
from ..m3unet.restore import DEFAULT_TILE, InputError
from .common import CATEGORY, M3UNetHandle, M3UNetModel, deblur_batch
from .compat import schema, seed_input

# The progress bar counts hundredths of an image: the estimate and the deconvolution take the first
# DECONVOLVED, the M3UNet clean-up pass the rest (one event per tile), so the bar moves during a run.
PER_IMAGE = 100
DECONVOLVED = 30


class M3UNetKernelDeblur(io.ComfyNode):
    """(model, IMAGE, optional blur sigma and noise) -> deblurred IMAGE and what was estimated."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="M3UNetKernelDeblur",
            display_name="M3UNet Kernel Deblur (defocus)",
            category=CATEGORY,
            search_aliases=["deblur", "out of focus", "defocus", "sharpen", "deconvolution"],
            description=(
                "Sharpens defocus (Gaussian) blur: a small network estimates the blur's width and the noise "
                "level from the image, a regularised deconvolution undoes the blur, and one M3UNet pass "
                "removes the noise and ringing the deconvolution leaves. Much stronger than a plain M3UNet "
                "pass on out-of-focus photos; for motion blur use Motion Deblur. Set blur_sigma by hand when the "
                "estimate is off. The output keeps the input's size, channels and batch."),
            inputs=[
                M3UNetModel.Input("model", tooltip="The model from Load M3UNet Model (runs the clean-up pass)."),
                io.Image.Input("image", tooltip="Blurred image(s); a batch is deblurred image by image."),
                io.Float.Input("blur_sigma", default=0.0, min=0.0, max=MAX_SIGMA, step=0.05, tooltip=(
                    "Width of the blur in pixels (Gaussian sigma). 0: estimate it from each image. Too "
                    "large a value rings around edges; too small only sharpens less.")),
                io.Float.Input("noise", default=-1.0, min=-1.0, max=50.0, step=0.5, tooltip=(
                    "Noise level in 1/255 units, which sets how cautious the deconvolution is. -1: "
                    "estimate it. Above 12 the deconvolution is skipped (denoise first).")),
                seed_input("Seed of the clean-up pass (one deterministic step: the result does not change "
                           "with it)."),
            ],
            outputs=[
                io.Image.Output(display_name="IMAGE", tooltip="The deblurred image(s)."),
                io.String.Output(display_name="report", tooltip=(
                    "Per image: the blur sigma and noise used (estimated or given).")),
            ],
        )

    @classmethod
    def execute(cls, model: M3UNetHandle, image, blur_sigma: float = 0.0, noise: float = -1.0,
                seed: int = 0) -> io.NodeOutput:
        model_management.throw_exception_if_processing_interrupted()
        if blur_sigma < 0 or blur_sigma > MAX_SIGMA:
            raise InputError(f"blur_sigma is {blur_sigma}; use 0 (estimate) to {MAX_SIGMA} px")
        tool = KernelDeblur(shipped_estimator(), model.ready())

        def restore_one(i: int, tick):
            return tool.restore(image[i:i + 1], seed=seed, tile=DEFAULT_TILE, progress=tick,
                                sigma=blur_sigma if blur_sigma > 0 else None, noise=noise if noise >= 0 else None)

        def describe_one(i: int) -> str:
            est = tool.estimates[0]
            given = "given" if blur_sigma > 0 else "estimated"
            skipped = "" if tool.would_deconvolve(est) else \
                " (deconvolution skipped: slight blur, strong noise or JPEG blocks; clean-up pass only)"
            return f"{est.describe()} ({given}){skipped}"

        out, report = deblur_batch(image, restore_one, describe_one, DECONVOLVED, PER_IMAGE)
        return io.NodeOutput(out, report, ui=ui.PreviewText(report))
