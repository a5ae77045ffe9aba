"""MLLMLoader and MLLMCaption: a multimodal LLM describes the image; its words steer the restoration.

Thin wrappers over :mod:`m3unet.caption.mllm` (backends, cache) and :mod:`m3unet.caption.vocabulary` (caption
-> content + restoration text). Local models live in ComfyUI's ``models/LLM`` folder (registered
with ``folder_paths`` as ``LLM``; one sub-folder per model) and go through ComfyUI's model
management: the transformers model is wrapped in ``comfy.model_patcher.ModelPatcher`` and loaded
with ``load_models_gpu`` before every caption, so ComfyUI offloads it when diffusion needs the memory.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import comfy.model_management as model_management
import comfy.model_patcher
import comfy.utils
import folder_paths
import torch
from comfy_api.latest import io

from ..m3unet import caption as cap
from .common import CATEGORY
from .compat import schema, seed_input

log = logging.getLogger("m3unet")

LLM_FOLDER = "LLM"
BACKENDS = ("none", "ollama", "openai")
DTYPES = {"auto": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MLLM = io.Custom("M3UNET_MLLM")


# ---------------------------------------------------------------------------- models/LLM
def register_llm_folder() -> None:
    """Add ``<models>/LLM`` to ``folder_paths`` (kept if another pack registered it already)."""
    ours = os.path.join(folder_paths.models_dir, LLM_FOLDER)
    entry = folder_paths.folder_names_and_paths.get(LLM_FOLDER)
    if entry is None:
        folder_paths.folder_names_and_paths[LLM_FOLDER] = ([ours], set())
    elif ours not in entry[0]:
        entry[0].append(ours)
    try:
        os.makedirs(ours, exist_ok=True)
    except OSError as e:
        log.debug("M3UNet: cannot create %s: %s", ours, e)


def llm_folders() -> dict[str, Path]:
    """Model folders under every ``LLM`` path: ``name`` or ``org/name`` (one level of nesting)."""
    found: dict[str, Path] = {}
    for root in folder_paths.get_folder_paths(LLM_FOLDER):
        root_p = Path(root)
        if not root_p.is_dir():
            continue
        for d in sorted(p for p in root_p.iterdir() if p.is_dir() and not p.name.startswith(".")):
            subs = [s for s in sorted(d.iterdir()) if s.is_dir() and (s / "config.json").is_file()]
            if not (d / "config.json").is_file() and subs:
                for s in subs:
                    found.setdefault(f"{d.name}/{s.name}", s)
            else:
                found.setdefault(d.name, d)
    return found


def model_options() -> list[str]:
    return list(BACKENDS) + [n for n in llm_folders() if n not in BACKENDS]


# ---------------------------------------------------------------------------- handle + cache
class MLLMHandle:
    """What flows through an ``M3UNET_MLLM`` socket: a captioner (+ its ModelPatcher for local models)."""

    def __init__(self, captioner: cap.Captioner, patcher=None, image_splitting: bool = True):
        self.captioner = captioner
        self.patcher = patcher
        self.image_splitting = image_splitting  # SmolVLM / Idefics3 tiling, set on the loader

    def __repr__(self) -> str:
        return f"MLLMHandle({self.captioner.describe()})"


def auto_dtype(device: torch.device) -> torch.dtype:
    """fp32 on a CPU; bf16 or fp16 on an accelerator that supports them (ComfyUI's own checks)."""
    if model_management.is_device_cpu(device):
        return torch.float32
    if model_management.should_use_bf16(device, prioritize_performance=False):
        return torch.bfloat16
    if model_management.should_use_fp16(device, prioritize_performance=False):
        return torch.float16
    return torch.float32


class ModelHolder(torch.nn.Module):
    """Plain module around a transformers model for ModelPatcher, which sets ``.device`` (read-only on
    a PreTrainedModel) and its bookkeeping attributes on the module it manages."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.inner = model


def holder_for(model: torch.nn.Module) -> ModelHolder:
    """A holder whose class carries the model's class name, so ComfyUI logs "Requested to load <name>"."""
    return type(type(model).__name__, (ModelHolder,), {})(model)


_cache: dict[tuple, MLLMHandle] = {}
_cache_lock = threading.Lock()


def _fingerprint(folder: Path) -> tuple:
    files = sorted(folder.glob("*.safetensors")) + [folder / "config.json"]
    return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files if p.is_file())


def load_local(name: str, dtype_name: str) -> MLLMHandle:
    """Load (or reuse) the model folder ``name`` from models/LLM; nothing is cached on failure."""
    folders = llm_folders()
    if name not in folders:
        roots = ", ".join(folder_paths.get_folder_paths(LLM_FOLDER))
        raise cap.ModelFolderError(f"model folder {name!r} not found in models/LLM ({roots}). "
                                   f"Available: {', '.join(folders) or 'none'}.")
    folder = folders[name]
    load_device = model_management.text_encoder_device()
    dtype = DTYPES[dtype_name] or auto_dtype(load_device)
    cap.detect_family(folder)  # clear error before any loading
    key = (str(folder.resolve()), _fingerprint(folder), str(dtype))
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            return hit
        captioner = cap.TransformersCaptioner(folder, dtype=dtype)
        patcher = comfy.model_patcher.ModelPatcher(
            holder_for(captioner.model), load_device=load_device, offload_device=model_management.text_encoder_offload_device())
        captioner.before_generate = lambda: model_management.load_models_gpu([patcher])
        handle = MLLMHandle(captioner, patcher)
        for k in [k for k in _cache if k[0] == key[0]]:
            del _cache[k]  # a stale copy of the same folder (changed files or dtype)
        _cache[key] = handle
        return handle


_classifier = None
_classifier_lock = threading.Lock()


def shipped_classifier():
    """The DegradationClassifier's reading (:class:`m3unet.auto.reading.Reader`) with the pack's shipped weights,
    or None while none are installed."""
    global _classifier
    from ..m3unet.auto import Classifier, Reader, load_classifier
    from ..m3unet.core import REPO
    path = REPO / "weights" / "classifier-default.safetensors"
    if not path.is_file():
        return None
    with _classifier_lock:
        if _classifier is None:
            _classifier = Reader(Classifier(load_classifier(path)))
        return _classifier


# ---------------------------------------------------------------------------- nodes
class MLLMLoader(io.ComfyNode):
    """Pick a caption backend: none, an Ollama / OpenAI-compatible endpoint, or a model folder in models/LLM."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="M3UNetMLLMLoader",
            display_name="MLLM Loader (M3UNet)",
            category=CATEGORY,
            description=(
                "Chooses who describes the image for MLLMCaption. 'none': no model; the caption is your own "
                "text plus the DegradationClassifier's findings (when its weights are installed). 'ollama' / "
                "'openai': a vision model served over HTTP (Ollama, or an OpenAI-compatible server such as "
                "llama.cpp server, LM Studio or vLLM); set host and remote_model. Any other entry is a "
                "Hugging Face model folder in models/LLM (SmolVLM/Idefics3, Qwen2-VL, Qwen2.5-VL, LLaVA, "
                "LLaVA-OneVision, BLIP, BLIP-2), loaded from local files only, without remote code."),
            inputs=[
                io.Combo.Input("model", options=model_options(), default="none", tooltip=(
                    "none, ollama, openai, or a model folder from models/LLM (one sub-folder per model with "
                    "config.json, .safetensors weights and the processor/tokenizer files).")),
                io.String.Input("host", default="", tooltip=(
                    f"ollama/openai only: server address. Empty = {cap.DEFAULT_OLLAMA_HOST} for Ollama, "
                    f"{cap.DEFAULT_OPENAI_HOST} for OpenAI-compatible servers.")),
                io.String.Input("remote_model", default="", tooltip=(
                    "ollama/openai only: the vision model's name on the server, e.g. qwen2.5vl:3b or llava:7b "
                    "for Ollama. The OpenAI backend sends OPENAI_API_KEY from the environment if set.")),
                io.Int.Input("timeout", default=int(cap.DEFAULT_TIMEOUT), min=1, max=3600, tooltip=(
                    "ollama/openai only: seconds to wait for one caption before giving up with an error.")),
                io.Combo.Input("dtype", options=list(DTYPES), default="auto", tooltip=(
                    "Local models only: auto = fp32 on a CPU, bf16/fp16 on a GPU that supports it.")),
                io.Boolean.Input("image_splitting", default=True, optional=True, tooltip=(
                    "SmolVLM / Idefics3 folders only: cut the image into 512 px tiles plus a global view, as "
                    "published (a square image becomes 17 tiles: the most detail, about 47 CPU seconds per "
                    "caption with SmolVLM-256M). Off: the global view only, 3-4x faster, less detail. Other "
                    "models ignore it.")),
            ],
            outputs=[MLLM.Output(display_name="mllm", tooltip="The caption backend, for MLLMCaption.")],
        )

    @classmethod
    def validate_inputs(cls, model: str, host: str = "", remote_model: str = "", timeout: int = 120,
                        dtype: str = "auto", image_splitting: bool = True):
        if not isinstance(model, str) or model in BACKENDS:
            return True
        if model in llm_folders():
            return True
        names = [n for n in llm_folders()]
        roots = ", ".join(folder_paths.get_folder_paths(LLM_FOLDER))
        return (f"model folder {model!r} not found in models/LLM ({roots}). Available: "
                f"{', '.join(list(BACKENDS) + names)}. Put a Hugging Face model folder into models/LLM.")

    @classmethod
    def fingerprint_inputs(cls, model: str, **kwargs):
        folder = llm_folders().get(model) if isinstance(model, str) else None
        return (model, _fingerprint(folder) if folder is not None else None)

    @classmethod
    def execute(cls, model: str, host: str = "", remote_model: str = "", timeout: int = 120,
                dtype: str = "auto", image_splitting: bool = True) -> io.NodeOutput:
        if model == "none":
            return io.NodeOutput(MLLMHandle(cap.FindingsCaptioner()))
        if model in ("ollama", "openai"):
            return io.NodeOutput(MLLMHandle(cap.make_http_captioner(model, remote_model, host, float(timeout))))
        loaded = load_local(model, dtype)  # cached per folder; the tiling is a per-call setting
        return io.NodeOutput(MLLMHandle(loaded.captioner, loaded.patcher, bool(image_splitting)))


class MLLMCaption(io.ComfyNode):
    """IMAGE + MLLM -> caption, content (restored text) and degradation_text (M3UNet's vocabulary)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return schema(
            node_id="M3UNetMLLMCaption",
            display_name="MLLM Caption (M3UNet)",
            category=CATEGORY,
            search_aliases=["caption", "describe image", "vision language model", "image to text"],
            description=(
                "A multimodal LLM describes the image; the description is then restored in text space. "
                "'caption' is the full text, 'content' the same text with the degradation words removed (chain "
                "it into CLIPTextEncode for an SD/SDXL refinement), 'degradation_text' what is wrong, in the "
                "restoration phrasing M3UNet was trained on (connect it to the M3UNet Sampler's text). Captions "
                "are cached by image content, model, prompt and settings: re-running does not re-caption."),
            inputs=[
                MLLM.Input("mllm", tooltip="The caption backend from MLLM Loader (M3UNet)."),
                io.Image.Input("image", tooltip="Image(s) to describe; a batch is captioned image by image."),
                io.Combo.Input("preset", options=list(cap.PRESETS) + [cap.CUSTOM], default=cap.DEFAULT_PRESET,
                               tooltip=("What to ask the model. The default asks for the content, then the quality "
                                        "problems with their severity. 'custom' uses custom_prompt.")),
                io.String.Input("custom_prompt", multiline=True, default="", tooltip=(
                    "Your own prompt (used when preset is 'custom').")),
                io.String.Input("user_text", multiline=True, default="", tooltip=(
                    "Your own words about the image, e.g. 'a cup of coffee; the photo is blurry and noisy'. "
                    "Backend 'none' builds the caption from this text (plus the classifier's findings); a model "
                    "backend gets it as context in the prompt.")),
                io.Int.Input("max_tokens", default=256, min=1, max=4096, tooltip=(
                    "Longest answer in tokens. Fewer is faster on a CPU.")),
                io.Float.Input("temperature", default=0.0, min=0.0, max=2.0, step=0.05, tooltip=(
                    "0 = greedy decoding (the same caption every time); above 0 samples with the seed.")),
                seed_input("Seed of the sampled decoding (only matters with temperature > 0)."),
                io.Boolean.Input("use_classifier", default=True, tooltip=(
                    "Fuse the DegradationClassifier's findings into degradation_text (and, for backend 'none', "
                    "into the caption). Skipped while the classifier's weights are not installed.")),
            ],
            outputs=[
                io.String.Output(display_name="caption", tooltip="The model's full description."),
                io.String.Output(display_name="content", tooltip=(
                    "The description without its degradation words: what a clean photo shows. Chain into "
                    "CLIPTextEncode for SD/SDXL refinement.")),
                io.String.Output(display_name="degradation_text", tooltip=(
                    "What is wrong, as M3UNet's restoration text (e.g. 'remove the heavy noise, then remove the "
                    "light blur'); connect to the M3UNet Sampler's text. Empty if nothing was found.")),
            ],
        )

    @classmethod
    def execute(cls, mllm: MLLMHandle, image, preset: str, custom_prompt: str, user_text: str, max_tokens: int,
                temperature: float, seed: int, use_classifier: bool) -> io.NodeOutput:
        if not isinstance(mllm, MLLMHandle):
            raise ValueError("mllm must come from MLLM Loader (M3UNet)")
        images = cap.check_caption_image(image)
        settings = cap.CaptionSettings(prompt=cap.resolve_prompt(preset, custom_prompt), max_tokens=int(max_tokens),
                                       temperature=float(temperature), seed=int(seed), user_text=user_text or "",
                                       image_splitting=mllm.image_splitting)
        findings = None
        if use_classifier:
            classifier = shipped_classifier()
            if classifier is not None:
                findings = classifier(images)
            else:
                log.info("M3UNet MLLMCaption: no DegradationClassifier weights installed; captions only")
        pbar = comfy.utils.ProgressBar(images.shape[0])

        def on_progress(done: int, total: int) -> None:
            pbar.update_absolute(done, total)
            model_management.throw_exception_if_processing_interrupted()

        model_management.throw_exception_if_processing_interrupted()
        result = cap.caption_images(mllm.captioner, images, settings, findings=findings, fuse_findings=True,
                                    progress=on_progress)
        log.info("M3UNet MLLMCaption (%s; %d of %d captions from the cache): %r -> %r", mllm.captioner.describe(),
                 sum(result.cached), len(result.cached), result.caption[:200], result.degradation_text)
        return io.NodeOutput(result.caption, result.content, result.degradation_text)
