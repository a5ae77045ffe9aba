"""Motion Deblur: estimate a camera-shake blur (cepstrum, then a fitted bowed path), deconvolve it, clean up with M3UNet."""
from __future__ import annotations

import comfy.model_management as model_management
from comfy_api.latest import io, ui

from ..m3unet.auto import MotionDeblur, MotionDeblurError
from ..m3unet.restore import DEFAULT_TILE
from .common import CATEGORY, M3UNetHandle, M3UNetModel, deblur_batch
from .compat import schema, seed_input

PER_IMAGE = 100   # progress: hundredths of an image
DECONVOLVED = 20  # the estimate and the deconvolution; the clean-up pass takes the rest
MAX_LENGTH = 60.0


class M3UNetMotionDeblur(io.ComfyNode):
    """(model, IMAGE, optional motion length and angle) -> deblurred IMAGE and the kernel used."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="M3UNetMotionDeblur",
            display_name="M3UNet Motion Deblur (camera shake)",
            category=CATEGORY,
            search_aliases=["motion blur", "camera shake", "deblur", "shaky photo", "deconvolution"],
            description=(
                "Removes camera-shake (motion) blur: the blur's length and direction are read from the "
                "image's cepstrum and refined into the straight or bowed path whose spectrum matches the "
                "image's, a regularised deconvolution undoes it, and one M3UNet pass removes the ringing and "
                "noise left. Set length and angle by hand when the estimate is off (a straight path is then "
                "used; the report says what was used). When an estimate finds no clear shake, only the "
                "clean-up pass runs (the report says so). A zig-zag shake is only partly undone. The output "
                "keeps the input's size, channels and batch."),
            inputs=[
                M3UNetModel.Input("model", tooltip="The model from Load M3UNet Model (runs the clean-up pass)."),
                io.Image.Input("image", tooltip="Shaken image(s); a batch is deblurred image by image."),
                io.Float.Input("length", default=0.0, min=0.0, max=MAX_LENGTH, step=0.5, tooltip=(
                    "Length of the shake in pixels. 0: estimate length and angle from each image.")),
                io.Float.Input("angle", default=-1.0, min=-1.0, max=180.0, step=1.0, tooltip=(
                    "Direction of the shake in degrees (0: horizontal, 90: vertical, turning clockwise as the "
                    "image is shown). -1: estimate it.")),
                io.Float.Input("strength", default=0.01, min=0.001, max=0.2, step=0.001, tooltip=(
                    "Regularisation of the deconvolution for a 10 px shake (scaled with the length): larger is "
                    "smoother and safer, smaller sharper but rings more.")),
                seed_input("Seed of the clean-up pass (one deterministic step: the result does not change "
                           "with it)."),
            ],
            outputs=[
                io.Image.Output(display_name="IMAGE", tooltip="The deblurred image(s)."),
                io.String.Output(display_name="report", tooltip="Per image: the shake length, angle, bow and noise used."),
            ],
        )

    @classmethod
    def execute(cls, model: M3UNetHandle, image, length: float = 0.0, angle: float = -1.0,
                strength: float = 0.01, seed: int = 0) -> io.NodeOutput:
        model_management.throw_exception_if_processing_interrupted()
        if not 0 <= length <= MAX_LENGTH:
            raise MotionDeblurError(f"length is {length}; use 0 (estimate) to {MAX_LENGTH} px")
        if 0 < length < 1:
            raise MotionDeblurError(f"length is {length}; a shake is at least 1 px (0: estimate it)")
        if not (angle == -1.0 or 0 <= angle <= 180):
            raise MotionDeblurError(f"angle is {angle}; use -1 (estimate) or 0 to 180 degrees")
        tool = MotionDeblur(model.ready(), base_balance=strength)

        def restore_one(i: int, tick):
            return tool.restore(image[i:i + 1], seed=seed, tile=DEFAULT_TILE, progress=tick,
                                length=length if length > 0 else None, angle=angle if angle >= 0 else None)

        def describe_one(i: int) -> str:
            est = tool.estimates[0]
            skipped = "" if tool.would_deconvolve(est) else \
                " (deconvolution skipped: no clear camera shake found; clean-up pass only. Set length and angle " \
                "by hand to force it)"
            return f"{est.describe()} ({'given' if length > 0 else 'estimated'}){skipped}"

        out, report = deblur_batch(image, restore_one, describe_one, DECONVOLVED, PER_IMAGE)
        return io.NodeOutput(out, report, ui=ui.PreviewText(report))
