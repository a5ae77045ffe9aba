"""M3UNetRefineEncoder: the global image embedding of the RefineEncoder stage."""
from __future__ import annotations

import comfy.model_management as model_management
from comfy_api.latest import io

from .common import CATEGORY, M3UNetEmbed, M3UNetHandle, M3UNetModel


class M3UNetRefineEncoder(io.ComfyNode):
    """IMAGE -> M3UNET_EMBED (one embedding vector per image of the batch)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="M3UNetRefineEncoder",
            display_name="RefineEncoder (M3UNet)",
            category=CATEGORY,
            description=(
                "Encodes an image with M3UNet's RefineEncoder (dilated refine layers) into a global "
                "embedding that conditions the Sampler together with the text. Without it the Sampler "
                "embeds the image (or the PixelControl guidance image) itself; use this node to reuse "
                "one embedding or to condition on another image."),
            inputs=[
                M3UNetModel.Input("model", tooltip="The model from Load M3UNet Model."),
                io.Image.Input("image", tooltip=(
                    "Image(s) to embed, usually the degraded image being restored. A batch gives one "
                    "embedding per image.")),
            ],
            outputs=[
                M3UNetEmbed.Output(display_name="embedding",
                                   tooltip="Image embedding [batch, dim] for the Sampler's embedding input."),
            ],
        )

    @classmethod
    def execute(cls, model: M3UNetHandle, image) -> io.NodeOutput:
        restorer = model.ready()
        embedding = restorer.embed_image(image)
        return io.NodeOutput(embedding.to(model_management.intermediate_device()))
