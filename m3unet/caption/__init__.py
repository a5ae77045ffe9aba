"""Caption: a multimodal LLM describes the image; the description is restored in text space and
its degradation words steer M3UNet (the paper's text prior, Sec. 3.3)."""
from .mllm import (CUSTOM, DEFAULT_OLLAMA_HOST, DEFAULT_OPENAI_HOST, DEFAULT_PRESET, DEFAULT_TIMEOUT, PRESETS,
                   CaptionSettings, Captioner, FindingsCaptioner, ModelFolderError, TransformersCaptioner,
                   caption_images, check_caption_image, detect_family, make_http_captioner, resolve_prompt)

__all__ = ["CUSTOM", "DEFAULT_OLLAMA_HOST", "DEFAULT_OPENAI_HOST", "DEFAULT_PRESET", "DEFAULT_TIMEOUT", "PRESETS",
           "CaptionSettings", "Captioner", "FindingsCaptioner", "ModelFolderError", "TransformersCaptioner",
           "caption_images", "check_caption_image", "detect_family", "make_http_captioner", "resolve_prompt"]
