"""M3UNetPixelControl: pixel-level control (guidance image + per-pixel strength from a MASK)."""
from __future__ import annotations

import torch
from comfy_api.latest import io

from ..m3unet.core import MAX_STRENGTH, make_control
from .common import CATEGORY, M3UNetControl


class M3UNetPixelControl(io.ComfyNode):
    """IMAGE (+ MASK) -> M3UNET_CONTROL."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="M3UNetPixelControl",
            display_name="PixelControl (M3UNet)",
            category=CATEGORY,
            description=(
                "Pixel-level control for the M3UNet Sampler: the guidance image's refine features enter "
                "every U-Net level through pixel attention, and the strength scales the restoration "
                "pixel by pixel (0 keeps the input, 1 is the trained restoration, up to 2 exaggerates "
                "it). With a mask, 'strength' applies inside the mask and 'outside' elsewhere."),
            inputs=[
                io.Image.Input("image", tooltip=(
                    "Guidance image, usually the degraded image itself. It must have the same size as "
                    "the image given to the Sampler.")),
                io.Float.Input("strength", default=1.0, min=0.0, max=MAX_STRENGTH, step=0.05, tooltip=(
                    "Restoration strength (inside the mask, if one is connected): 0 keeps the input, "
                    "1 is the normal restoration, above 1 exaggerates it.")),
                io.Mask.Input("mask", optional=True, tooltip=(
                    "Optional MASK [B, H, W] or [H, W]: 1 = restore with 'strength', 0 = use 'outside'; "
                    "soft values blend. Resized to the image size if needed. An all-zero mask (what "
                    "LoadImage gives for an image without alpha) is ignored: 'strength' applies everywhere.")),
                io.Float.Input("outside", default=0.0, min=0.0, max=MAX_STRENGTH, step=0.05, tooltip=(
                    "Strength outside the mask (only used when a mask is connected); 0 leaves those "
                    "pixels as they are.")),
            ],
            outputs=[
                M3UNetControl.Output(display_name="control",
                                     tooltip="Pixel control for the Sampler's control input."),
            ],
        )

    @classmethod
    def execute(cls, image, strength: float, outside: float = 0.0, mask=None) -> io.NodeOutput:
        if mask is not None:
            if not torch.is_tensor(mask) or mask.ndim not in (2, 3):
                shape = tuple(mask.shape) if torch.is_tensor(mask) else type(mask).__name__
                raise ValueError(f"mask must be a MASK of shape [B, H, W] or [H, W]; got {shape}. "
                                 "Connect a MASK output (e.g. from LoadImage or a mask node), not an IMAGE.")
        return io.NodeOutput(make_control(strength=strength, mask=mask, image=image, outside=outside))
