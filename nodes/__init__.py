"""The M3UNet ComfyUI nodes (V3 API); imported by the pack's ``comfy_entrypoint`` only.

One module per concept: ``loader`` (checkpoint), ``refine`` (RefineEncoder embedding),
``control`` (PixelControl), ``sampler`` (restoration), ``classify`` (DegradationClassifier),
``caption`` (MLLM Loader + MLLM Caption: the multimodal-LLM text prior), ``autorestore``
(automatic restore with the classifier, planner and model pool), ``deblur`` (kernel-aware
deblurring), ``motion`` (camera-shake deblurring); ``common`` holds the socket types, the ``m3unet`` models folder and the
model-management glue, ``compat`` what differs between ComfyUI versions.
"""
from .caption import register_llm_folder
from .common import register_model_folder

register_model_folder()  # before any schema lists the folder's files
register_llm_folder()

from .autorestore import M3UNetAutoRestore  # noqa: E402
from .caption import MLLMCaption, MLLMLoader  # noqa: E402
from .classify import NODE_ID as CLASSIFIER_ID, OLD_NODE_ID as OLD_CLASSIFIER_ID  # noqa: E402
from .classify import DegradationClassifierNode  # noqa: E402
from .compat import register_replacements  # noqa: E402
from .control import M3UNetPixelControl  # noqa: E402
from .deblur import M3UNetKernelDeblur  # noqa: E402
from .loader import M3UNetLoader  # noqa: E402
from .motion import M3UNetMotionDeblur  # noqa: E402
from .refine import M3UNetRefineEncoder  # noqa: E402
from .sampler import M3UNetSampler  # noqa: E402

NODE_LIST = [M3UNetLoader, M3UNetRefineEncoder, M3UNetPixelControl, M3UNetSampler, DegradationClassifierNode,
             M3UNetAutoRestore, M3UNetKernelDeblur, M3UNetMotionDeblur, MLLMLoader, MLLMCaption]

# Node ids renamed since workflows were first shared: (new id, old id, the old node's widget names in order).
RENAMED = [(CLASSIFIER_ID, OLD_CLASSIFIER_ID, ["classifier_name", "threshold"])]


async def on_load() -> None:
    """Called once by ComfyUI when the pack loads (newer ComfyUI; 0.3.75 does not call it): workflows
    that name a renamed node's old id load as the new node where ComfyUI can migrate them."""
    await register_replacements(RENAMED)


__all__ = ["NODE_LIST", "RENAMED", "on_load", "M3UNetLoader", "M3UNetRefineEncoder", "M3UNetPixelControl",
           "M3UNetSampler", "DegradationClassifierNode", "M3UNetAutoRestore", "M3UNetKernelDeblur", "M3UNetMotionDeblur", "MLLMLoader", "MLLMCaption"]
