"""M3UNetLoader: pick an M3UNet checkpoint from the ``m3unet`` models folder."""
from __future__ import annotations

from comfy_api.latest import io

from .common import CATEGORY, DEFAULT_MODEL_NAME, M3UNetModel, file_fingerprint, load_handle, model_names, model_path


class M3UNetLoader(io.ComfyNode):
    """Load an M3UNet ``.safetensors`` checkpoint (cached: re-running does not read it again)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="M3UNetLoader",
            display_name="Load M3UNet Model",
            category=CATEGORY,
            description=(
                "Loads an M3UNet restoration model (.safetensors) from models/m3unet or the pack's "
                f"weights folder. {DEFAULT_MODEL_NAME} is the model shipped with the pack. Loaded models "
                "are cached per file and modification time, and ComfyUI's model management moves them "
                "to the GPU when one is available."),
            inputs=[
                io.Combo.Input(
                    "model_name", options=model_names(), default=DEFAULT_MODEL_NAME,
                    tooltip=("M3UNet checkpoint. Put your own .safetensors files into models/m3unet; "
                             "pickled .pt/.ckpt files are refused for safety.")),
            ],
            outputs=[
                M3UNetModel.Output(display_name="m3unet_model",
                                   tooltip="The M3UNet model, for RefineEncoder and the Sampler."),
            ],
        )

    @classmethod
    def validate_inputs(cls, model_name: str):
        # ComfyUI 0.3.75 does not check V3 combo values against their options: do it here, so
        # that a workflow naming a missing file is rejected before anything runs.
        if not isinstance(model_name, str):  # linked from another node: checked when it runs
            return True
        names = model_names()
        try:
            path = model_path(model_name)
        except ValueError as e:
            path, reason = None, str(e)
        if path is not None and path.is_file():
            return True
        if path is not None:
            reason = f"M3UNet model file {model_name!r} not found ({path})."
        shown = ", ".join(names[:20]) + (f" ... ({len(names)} files)" if len(names) > 20 else "")
        return f"{reason} Available: {shown}. Put .safetensors files into models/m3unet."

    @classmethod
    def fingerprint_inputs(cls, model_name: str):
        # Re-run when the file behind the name changes (e.g. a newer checkpoint copied over it).
        try:
            return (model_name, file_fingerprint(model_path(model_name)))
        except ValueError:
            return model_name

    @classmethod
    def execute(cls, model_name: str) -> io.NodeOutput:
        return io.NodeOutput(load_handle(model_path(model_name)))
