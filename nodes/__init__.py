"""The M3UNet ComfyUI nodes (V3 API); imported by the pack's ``comfy_entrypoint`` only.

One module per concept: ``loader`` (checkpoint), ``refine`` (RefineEncoder embedding),
``control`` (PixelControl), ``sampler`` (restoration), ``classify`` (DegradationClassifier),
``caption`` (MLLM Loader + MLLM Caption: the multimodal-LLM text prior), ``autorestore``
(automatic restore with the classifier, planner and model pool), ``deblur`` (kernel-aware
deblurring); ``common`` holds the socket
types, the ``m3unet`` models folder and the model-management glue.
"""
from .caption import register_llm_folder
from .common import register_model_folder

register_model_folder()  # before any schema lists the folder's files
register_llm_folder()

from .autorestore import M3UNetAutoRestore  # noqa: E402
from .caption import MLLMCaption, MLLMLoader  # noqa: E402
from .classify import DegradationClassifierNode  # noqa: E402
from .control import M3UNetPixelControl  # noqa: E402
from .deblur import M3UNetKernelDeblur  # noqa: E402
from .loader import M3UNetLoader  # noqa: E402
from .refine import M3UNetRefineEncoder  # noqa: E402
from .sampler import M3UNetSampler  # noqa: E402

NODE_LIST = [M3UNetLoader, M3UNetRefineEncoder, M3UNetPixelControl, M3UNetSampler, DegradationClassifierNode,
             M3UNetAutoRestore, M3UNetKernelDeblur, MLLMLoader, MLLMCaption]

__all__ = ["NODE_LIST", "M3UNetLoader", "M3UNetRefineEncoder", "M3UNetPixelControl", "M3UNetSampler",
           "DegradationClassifierNode", "M3UNetAutoRestore", "M3UNetKernelDeblur", "MLLMLoader", "MLLMCaption"]
