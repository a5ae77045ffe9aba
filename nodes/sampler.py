"""M3UNetSampler: text-guided restoration of an IMAGE batch (tiled, seeded, interruptible)."""
from __future__ import annotations

import logging

import comfy.model_management as model_management
import comfy.utils
from comfy_api.latest import io

from ..m3unet.restore import DEFAULT_OVERLAP, DEFAULT_STEPS, DEFAULT_TILE, MIN_TILE, InputError, Progress
from .common import CATEGORY, Degradation, M3UNetControl, M3UNetEmbed, M3UNetHandle, M3UNetModel
from .compat import schema, seed_input

log = logging.getLogger("m3unet")

MAX_TILE = 2048
MAX_STEPS = 50


def steering_texts(findings: list, batch: int) -> list[str]:
    """Per-image restoration texts from the classifier's findings (one finding, or one per image)."""
    if len(findings) not in (1, batch):
        raise InputError(f"degradation: has findings for {len(findings)} images but the image batch has {batch}; "
                         "classify the same image batch that is restored")
    texts = [f.restoration_text() for f in findings]
    return texts * batch if len(texts) == 1 else texts


class M3UNetSampler(io.ComfyNode):
    """(model, IMAGE, text, optional embedding/control) -> restored IMAGE of the same size."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="M3UNetSampler",
            display_name="M3UNet Sampler (Restore)",
            category=CATEGORY,
            search_aliases=["restore photo", "denoise", "deblur", "remove JPEG artifacts", "fix image",
                            "image restoration"],
            description=(
                "Restores images with M3UNet: a diffusion bridge that starts from the degraded image, "
                "steered by a restoration text (e.g. 'remove the noise and JPEG artifacts'), the image "
                "embedding and optional pixel control. Works in overlapping tiles with seamless blending; "
                "the output keeps the input's size, channels (grey/RGB/RGBA; alpha passes through) and "
                "batch. Interruptible after every step of every tile."),
            inputs=[
                M3UNetModel.Input("model", tooltip="The model from Load M3UNet Model."),
                io.Image.Input("image", tooltip="Degraded image(s) to restore; a batch is restored image by image."),
                io.String.Input("text", multiline=True, default="", tooltip=(
                    "What is wrong and what to do, e.g. 'remove the heavy noise, keep it sharp'. "
                    "Empty: restore blindly.")),
                M3UNetEmbed.Input("embedding", optional=True, tooltip=(
                    "Optional image embedding from RefineEncoder (M3UNet). Default: computed from the "
                    "image (or from the PixelControl guidance image).")),
                M3UNetControl.Input("control", optional=True, tooltip=(
                    "Optional pixel control from PixelControl (M3UNet): guidance image and per-pixel "
                    "strength. Default: the image itself at strength 1.")),
                Degradation.Input("degradation", optional=True, tooltip=(
                    "Optional findings of the Degradation Classifier. When the text is empty, each image "
                    "is restored with its own restoration text from the findings.")),
                io.Int.Input("steps", default=DEFAULT_STEPS, min=1, max=MAX_STEPS, tooltip=(
                    f"Sampler steps. One step is already a full restoration; more steps refine it and "
                    f"cost proportionally more time (default {DEFAULT_STEPS}).")),
                seed_input("Seed of the sampler's fresh noise (only matters with eta > 0 and more than one step)."),
                io.Float.Input("eta", default=0.0, min=0.0, max=1.0, step=0.05, tooltip=(
                    "Stochasticity: 0 = deterministic sampling, 1 = fresh noise at every step.")),
                io.Int.Input("tile", default=DEFAULT_TILE, min=MIN_TILE, max=MAX_TILE, step=64, tooltip=(
                    f"Tile size in pixels ({DEFAULT_OVERLAP} px overlap, blended). Smaller tiles use "
                    "less memory; on out-of-memory the tile is halved automatically.")),
            ],
            outputs=[
                io.Image.Output(display_name="IMAGE", tooltip="The restored image(s), same size as the input."),
            ],
        )

    @classmethod
    def execute(cls, model: M3UNetHandle, image, text: str, steps: int, seed: int, eta: float, tile: int,
                embedding=None, control=None, degradation=None) -> io.NodeOutput:
        model_management.throw_exception_if_processing_interrupted()
        if degradation is not None and not text.strip():
            text = steering_texts(degradation, image.shape[0])
        restorer = model.ready()
        pbar: comfy.utils.ProgressBar | None = None

        def on_progress(p: Progress) -> None:
            nonlocal pbar
            if pbar is None or pbar.total != p.total:
                pbar = comfy.utils.ProgressBar(p.total)
            pbar.update_absolute(p.done, p.total)
            model_management.throw_exception_if_processing_interrupted()

        # Out of memory, the library restores again with half the tile (down to MIN_TILE), freeing
        # ComfyUI's cache first: the same fallback as every other path (command line, Auto Restore).
        out = restorer.restore(image, text=text, steps=steps, seed=seed, eta=eta, control=control,
                               image_embedding=embedding, tile=tile, overlap=DEFAULT_OVERLAP,
                               progress=on_progress, on_oom=lambda _tile: model_management.soft_empty_cache())
        return io.NodeOutput(out.to(model_management.intermediate_device()))
