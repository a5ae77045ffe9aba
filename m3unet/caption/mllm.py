"""MLLM captions: a multimodal LLM describes the degraded image (the paper's text prior, Sec. 3.3).

Three backends, one interface (:class:`Captioner`: an RGB image in, the model's text out):

* :class:`TransformersCaptioner`: a local Hugging Face model folder (``config.json`` +
  safetensors + processor files), detected from ``config.json``'s ``model_type`` and loaded with
  ``AutoProcessor`` / ``AutoModelForImageTextToText`` from local files only, never with
  ``trust_remote_code`` and never with flash-attention (PyTorch SDPA, or eager where a model
  lacks it). Families: :data:`FAMILIES`.
* :class:`OllamaCaptioner` / :class:`OpenAICaptioner`: a vision model served over HTTP by Ollama
  (``/api/chat``) or any OpenAI-compatible server (``/v1/chat/completions``: llama.cpp server,
  LM Studio, vLLM...), default host 127.0.0.1, with a timeout. Standard library only.
* :class:`FindingsCaptioner` ("none"): no model; the caption is the user's own text plus a
  sentence built from the DegradationClassifier's findings (:mod:`m3unet.auto.classifier`), if any.

:func:`caption_images` runs a captioner over an IMAGE batch, caches each caption by image content
(SHA-256 of the pixels) + backend + prompt + settings, and splits it with
:func:`m3unet.caption.vocabulary.split_caption` into the content and the restoration text.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..core.degradations import Degradation
from .vocabulary import degradation_sentence, fuse, split_caption

# model_type in config.json -> family. Every family loads with AutoModelForImageTextToText.
FAMILIES = {
    "blip": "BLIP", "blip-2": "BLIP-2",
    "idefics3": "SmolVLM / Idefics3", "smolvlm": "SmolVLM2",
    "qwen2_vl": "Qwen2-VL", "qwen2_5_vl": "Qwen2.5-VL",
    "llava": "LLaVA 1.5", "llava_next": "LLaVA-NeXT", "llava_onevision": "LLaVA-OneVision",
}
CAPTION_ONLY = {"blip", "blip-2"}  # no chat template: they caption, they do not follow instructions
NESTED_IMAGES = {"idefics3", "smolvlm"}  # their processors take one list of images per prompt

PRESETS = {
    "restoration (content, then quality problems)": (
        "Describe this photo in two parts. First, in one or two sentences, what it shows: the subjects, "
        "the setting and the colours. Then list its image quality problems, choosing from noise, blur, "
        "motion blur, JPEG compression artifacts, low resolution, low light and haze, each with a severity "
        "(slight, moderate or heavy). If the image has no quality problems, say so."),
    "content only": "Describe what this photo shows in one or two sentences: the subjects, the setting and the colours.",
    "quality problems only": (
        "List the image quality problems of this photo, choosing from noise, blur, motion blur, JPEG "
        "compression artifacts, low resolution, low light and haze, each with a severity (slight, moderate or "
        "heavy). If it has none, say so."),
    "detailed (for SD/SDXL refinement prompts)": (
        "Describe this photo in detail for an image generator prompt: subjects, materials, lighting, "
        "colours, composition and style, in three or four sentences. Then add one sentence about its image "
        "quality problems (noise, blur, JPEG artifacts, low resolution, low light, haze), if any."),
}
DEFAULT_PRESET = next(iter(PRESETS))
CUSTOM = "custom"
MAX_SIDE = 16384        # beyond this an image is refused (downscale it first)
MIN_SIDE = 8            # below this there is nothing to describe
SEND_SIDE = 1024        # images are downscaled to this long side before captioning
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
DEFAULT_OPENAI_HOST = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 120.0


class CaptionError(ValueError):
    """A captioning input or backend problem, with a message that names the cause and the fix."""


class ModelFolderError(CaptionError):
    """The folder is not a supported transformers model."""


class EndpointError(CaptionError):
    """The HTTP endpoint is unreachable, timed out or answered with an error."""


# ---------------------------------------------------------------------------- images
def check_caption_image(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """Validate an IMAGE batch ``[B, H, W, C]`` for captioning; returns it (C 1, 3 or 4)."""
    if not torch.is_tensor(image) or image.ndim != 4:
        shape = tuple(image.shape) if torch.is_tensor(image) else type(image).__name__
        raise CaptionError(f"{name} must be an IMAGE batch [batch, height, width, channels]; got {shape}")
    b, h, w, c = image.shape
    if b == 0 or h == 0 or w == 0:
        raise CaptionError(f"{name} is empty ({b} images of {w}x{h} px); connect a loaded image")
    if c not in (1, 3, 4):
        raise CaptionError(f"{name} has {c} channels; expected 1 (grey), 3 (RGB) or 4 (RGBA)")
    if min(h, w) < MIN_SIDE:
        raise CaptionError(f"{name} is {w}x{h} px; captioning needs at least {MIN_SIDE} px per side")
    if max(h, w) > MAX_SIDE:
        raise CaptionError(f"{name} is {w}x{h} px; captioning takes at most {MAX_SIDE} px per side. "
                           f"Downscale it first (e.g. with an Upscale Image node set to a smaller size)")
    return image


def to_pil(image: torch.Tensor, max_side: int = SEND_SIDE) -> Image.Image:
    """One image ``[H, W, C]`` (float 0-1 or uint8) -> an RGB PIL image, long side <= ``max_side``."""
    x = image.detach().cpu()
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    if x.shape[-1] == 1:
        x = x.expand(-1, -1, 3)
    arr = (x[..., :3].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    pil = Image.fromarray(arr)
    if max(pil.size) > max_side:
        s = max_side / max(pil.size)
        pil = pil.resize((max(1, round(pil.width * s)), max(1, round(pil.height * s))), Image.Resampling.LANCZOS)
    return pil


def image_hash(image: torch.Tensor) -> str:
    """SHA-256 of one image's pixels, shape and dtype (the caption cache key)."""
    x = image.detach().cpu().contiguous()
    h = hashlib.sha256(f"{tuple(x.shape)}{x.dtype}".encode())
    h.update(x.numpy().tobytes() if x.dtype != torch.bfloat16 else x.float().numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class CaptionSettings:
    """What decides a caption besides the image and the backend."""
    prompt: str = PRESETS[DEFAULT_PRESET]
    max_tokens: int = 256
    temperature: float = 0.0     # 0: greedy decoding (deterministic); > 0: sampled with ``seed``
    seed: int = 0
    user_text: str = ""          # the user's own words about the image
    # SmolVLM / Idefics3: cut the image into 512 px tiles plus a global view, as published (False:
    # the global view only, 3-4x faster on a CPU, less detail). Other families ignore it.
    image_splitting: bool = True

    def key(self) -> str:
        return json.dumps([self.prompt, self.max_tokens, self.temperature,
                           self.seed if self.temperature > 0 else 0, self.user_text]
                          + ([] if self.image_splitting else ["no-splitting"]))

    def full_prompt(self) -> str:
        if not self.user_text.strip():
            return self.prompt
        return f"{self.prompt}\nThe user says about this photo: {self.user_text.strip()}"


def resolve_prompt(preset: str, custom_prompt: str) -> str:
    """The prompt for a preset name, or ``custom_prompt`` for "custom" (which must not be empty)."""
    if preset == CUSTOM:
        if not custom_prompt.strip():
            raise CaptionError("prompt preset is 'custom' but custom_prompt is empty; write a prompt or pick a preset")
        return custom_prompt.strip()
    if preset not in PRESETS:
        raise CaptionError(f"unknown prompt preset {preset!r}; choose one of {[*PRESETS, CUSTOM]}")
    return PRESETS[preset]


# ---------------------------------------------------------------------------- backends
class Captioner:
    """A caption backend: ``caption(pil_image, settings) -> text``; ``identity`` names it for the cache."""
    backend = "base"
    identity = "base"

    def caption(self, image: Image.Image, settings: CaptionSettings, findings=None) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        return self.identity


class FindingsCaptioner(Captioner):
    """No model: the user's text plus the DegradationClassifier's findings as a sentence."""
    backend = "none"
    identity = "none"

    def caption(self, image: Image.Image, settings: CaptionSettings, findings=None) -> str:
        parts = [settings.user_text.strip()]
        if findings is not None:
            parts.append(degradation_sentence(findings_degradations(findings)))
        text = " ".join(p for p in parts if p)
        return text


def findings_degradations(finding) -> list[Degradation]:
    """A classifier :class:`~m3unet.auto.classifier.Finding` (or a list of degradations) -> degradations."""
    if finding is None:
        return []
    if isinstance(finding, (list, tuple)):
        return [d for d in finding if isinstance(d, Degradation)]
    return [Degradation(k, float(finding.severity[k])) for k in finding.labels]


def _read_config(folder: Path) -> dict:
    cfg_path = folder / "config.json"
    if not folder.is_dir():
        raise ModelFolderError(f"model folder not found: {folder}")
    if not cfg_path.is_file():
        raise ModelFolderError(
            f"{folder.name} is not a transformers model folder: it has no config.json. Put the complete "
            f"Hugging Face model folder (config.json, *.safetensors, processor and tokenizer files) into models/LLM.")
    try:
        return json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelFolderError(f"{folder.name}/config.json is not valid JSON: {e}") from e


def detect_family(folder: Path | str) -> str:
    """The ``model_type`` of a model folder if it is a supported family; else a clear error."""
    folder = Path(folder)
    cfg = _read_config(folder)
    model_type = cfg.get("model_type")
    if model_type in FAMILIES:
        return model_type
    supported = ", ".join(f"{v} ({k})" for k, v in FAMILIES.items())
    if cfg.get("auto_map"):
        raise ModelFolderError(
            f"{folder.name}: model_type {model_type!r} needs its own remote code (auto_map in config.json), "
            f"which this pack never runs. Supported families: {supported}.")
    raise ModelFolderError(f"{folder.name}: model family {model_type!r} is not supported for captioning. "
                           f"Supported families: {supported}.")


class TransformersCaptioner(Captioner):
    """A local transformers vision-language model (CPU fp32 by default; fp16/bf16 on request)."""
    backend = "transformers"

    def __init__(self, folder: Path | str, dtype: torch.dtype = torch.float32):
        from transformers import AutoModelForImageTextToText, AutoProcessor
        self.folder = Path(folder)
        self.family = detect_family(self.folder)
        weights = list(self.folder.glob("*.safetensors"))
        if not weights:
            pickled = [p.name for p in self.folder.glob("*.bin")] + [p.name for p in self.folder.glob("*.pt")]
            hint = (f" It has {', '.join(pickled[:3])}: pickled weights are refused for safety; use the "
                    f"model's .safetensors release." if pickled else "")
            raise ModelFolderError(f"{self.folder.name} has no .safetensors weights.{hint}")
        kw = dict(local_files_only=True, trust_remote_code=False)
        try:
            self.processor = AutoProcessor.from_pretrained(self.folder, **kw)
        except Exception as e:  # noqa: BLE001 - transformers raises many types; name the folder
            raise ModelFolderError(f"{self.folder.name}: cannot load its processor/tokenizer files "
                                   f"({type(e).__name__}: {str(e)[:300]})") from e
        model = None
        for attn in ("sdpa", "eager"):
            try:
                model = AutoModelForImageTextToText.from_pretrained(
                    self.folder, dtype=dtype, attn_implementation=attn, use_safetensors=True, **kw)
                break
            except ValueError as e:
                if attn == "sdpa" and "attention implementation" in str(e).lower():
                    continue  # this architecture has no SDPA path: eager attention
                raise ModelFolderError(f"{self.folder.name}: cannot load the model ({str(e)[:300]})") from e
            except Exception as e:  # noqa: BLE001
                raise ModelFolderError(f"{self.folder.name}: cannot load the model "
                                       f"({type(e).__name__}: {str(e)[:300]})") from e
        self.model = model.eval()
        self.dtype = dtype
        self.identity = f"transformers:{self.folder.resolve()}:{dtype}"
        # Called before every generation; ComfyUI's model management hooks in here.
        self.before_generate: Callable[[], None] | None = None

    def describe(self) -> str:
        return f"{FAMILIES[self.family]} model {self.folder.name}"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _inputs(self, image: Image.Image, settings: CaptionSettings) -> dict:
        if self.family == "blip":
            return self.processor(images=image, return_tensors="pt")  # unconditional caption
        if self.family == "blip-2":
            return self.processor(images=image, text=f"Question: {settings.full_prompt()} Answer:", return_tensors="pt")
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": settings.full_prompt()}]}]
        try:
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        except Exception as e:  # noqa: BLE001 - e.g. a processor saved without a chat template
            raise ModelFolderError(f"{self.folder.name}: its processor has no usable chat template "
                                   f"({type(e).__name__}: {str(e)[:200]}); use the instruct/chat release") from e
        images = [[image]] if self.family in NESTED_IMAGES else [image]
        extra = {"do_image_splitting": False} if self.family == "idefics3" and not settings.image_splitting else {}
        return self.processor(images=images, text=[text], return_tensors="pt", **extra)

    @torch.inference_mode()
    def caption(self, image: Image.Image, settings: CaptionSettings, findings=None) -> str:
        if self.before_generate is not None:
            self.before_generate()
        inputs = self._inputs(image, settings)
        device, dtype = self.device, self.dtype
        inputs = {k: (v.to(device, dtype) if torch.is_floating_point(v) else v.to(device)) if torch.is_tensor(v) else v
                  for k, v in inputs.items()}
        gen = dict(max_new_tokens=int(settings.max_tokens), do_sample=settings.temperature > 0)
        if settings.temperature > 0:
            gen["temperature"] = float(settings.temperature)
            torch.manual_seed(int(settings.seed) % (2 ** 63))
        out = self.model.generate(**inputs, **gen)
        if self.family != "blip":  # BLIP's output has no prompt part to cut
            out = out[:, inputs["input_ids"].shape[1]:]
        text = self.processor.batch_decode(out, skip_special_tokens=True)[0]
        return " ".join(text.split())


def _png_b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


class HTTPCaptioner(Captioner):
    """Common HTTP client (urllib): JSON POST with a timeout and errors that say what to do."""
    default_host = DEFAULT_OLLAMA_HOST
    server_name = "server"

    def __init__(self, model: str, host: str = "", timeout: float = DEFAULT_TIMEOUT, api_key: str | None = None):
        if not model.strip():
            raise CaptionError(f"{self.server_name}: no model name given; enter the name of a vision model "
                               f"the server has (e.g. {self.example_model})")
        self.model_name = model.strip()
        host = (host or "").strip() or self.default_host
        if "://" not in host:
            host = "http://" + host
        self.host = host.rstrip("/")
        if timeout <= 0:
            raise CaptionError(f"timeout must be positive; got {timeout}")
        self.timeout = float(timeout)
        self.api_key = api_key
        self.identity = f"{self.backend}:{self.host}:{self.model_name}"

    example_model = ""

    def describe(self) -> str:
        return f"{self.server_name} model {self.model_name} at {self.host}"

    def _post(self, path: str, body: dict) -> dict:
        url = self.host + path
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        # A server on this machine is reached directly, whatever proxy the environment sets.
        local = urllib.parse.urlsplit(self.host).hostname in ("127.0.0.1", "localhost", "::1")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({})) if local else urllib.request.build_opener()
        try:
            with opener.open(req, timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            detail = e.read()[:500].decode(errors="replace")
            raise EndpointError(f"{self.server_name} at {self.host} answered HTTP {e.code} for model "
                                f"{self.model_name!r}: {detail.strip() or e.reason}{self._hint(e.code)}") from e
        except (socket.timeout, TimeoutError) as e:
            raise EndpointError(f"{self.server_name} at {self.host} did not answer within {self.timeout:.0f} s; "
                                "raise the timeout or use a smaller model") from e
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise EndpointError(f"{self.server_name} at {self.host} did not answer within {self.timeout:.0f} s; "
                                    "raise the timeout or use a smaller model") from e
            raise EndpointError(f"cannot reach {self.server_name} at {self.host} ({reason}); {self.start_hint}") from e
        except (ConnectionError, OSError) as e:
            raise EndpointError(f"cannot reach {self.server_name} at {self.host} ({e}); {self.start_hint}") from e
        try:
            return json.loads(raw)
        except json.JSONDecodeError as e:
            raise EndpointError(f"{self.server_name} at {self.host} did not answer with JSON "
                                f"(got {raw[:200]!r}); is the host/port right?") from e

    start_hint = "is the server running and the host right?"

    def _hint(self, code: int) -> str:
        return ""


class OllamaCaptioner(HTTPCaptioner):
    """Ollama's ``POST /api/chat`` (images as base64 in the message; non-streaming)."""
    backend = "ollama"
    default_host = DEFAULT_OLLAMA_HOST
    server_name = "Ollama"
    example_model = "qwen2.5vl:3b or llava:7b"
    start_hint = "start it with `ollama serve` (default port 11434) or fix the host"

    def _hint(self, code: int) -> str:
        return f"; pull it first: `ollama pull {self.model_name}`" if code == 404 else ""

    def caption(self, image: Image.Image, settings: CaptionSettings, findings=None) -> str:
        body = {"model": self.model_name, "stream": False,
                "messages": [{"role": "user", "content": settings.full_prompt(), "images": [_png_b64(image)]}],
                "options": {"num_predict": int(settings.max_tokens), "temperature": float(settings.temperature),
                            "seed": int(settings.seed) % (2 ** 31)}}
        answer = self._post("/api/chat", body)
        try:
            return " ".join(str(answer["message"]["content"]).split())
        except (KeyError, TypeError) as e:
            raise EndpointError(f"Ollama at {self.host} answered without message.content: {str(answer)[:300]}") from e


class OpenAICaptioner(HTTPCaptioner):
    """OpenAI-compatible ``POST /v1/chat/completions`` (image as a data URL)."""
    backend = "openai"
    default_host = DEFAULT_OPENAI_HOST
    server_name = "OpenAI-compatible server"
    example_model = "the name your server lists under /v1/models"
    start_hint = "start your OpenAI-compatible server (llama.cpp server, LM Studio, vLLM...) or fix the host"

    def __init__(self, model: str, host: str = "", timeout: float = DEFAULT_TIMEOUT, api_key: str | None = None):
        super().__init__(model, host, timeout, api_key if api_key is not None else os.environ.get("OPENAI_API_KEY"))
        if self.host.endswith("/v1"):
            self.host = self.host[:-3]

    def caption(self, image: Image.Image, settings: CaptionSettings, findings=None) -> str:
        body = {"model": self.model_name, "max_tokens": int(settings.max_tokens),
                "temperature": float(settings.temperature), "seed": int(settings.seed) % (2 ** 31),
                "messages": [{"role": "user", "content": [
                    {"type": "text", "text": settings.full_prompt()},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + _png_b64(image)}}]}]}
        answer = self._post("/v1/chat/completions", body)
        try:
            return " ".join(str(answer["choices"][0]["message"]["content"]).split())
        except (KeyError, IndexError, TypeError) as e:
            raise EndpointError(f"{self.host} answered without choices[0].message.content: {str(answer)[:300]}") from e


def make_http_captioner(backend: str, model: str, host: str = "", timeout: float = DEFAULT_TIMEOUT) -> HTTPCaptioner:
    if backend == "ollama":
        return OllamaCaptioner(model, host, timeout)
    if backend == "openai":
        return OpenAICaptioner(model, host, timeout)
    raise CaptionError(f"unknown HTTP backend {backend!r}; expected 'ollama' or 'openai'")


# ---------------------------------------------------------------------------- batch + cache
class CaptionCache:
    """Captions by (image hash, backend identity, settings); least recently used dropped first."""

    def __init__(self, max_entries: int = 512):
        self.max_entries = max_entries
        self._items: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, str, str]) -> str | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
            return None

    def put(self, key: tuple[str, str, str], text: str) -> None:
        with self._lock:
            self._items[key] = text
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


CACHE = CaptionCache()


@dataclass
class CaptionResult:
    """Per-image captions of a batch, and the batch's outputs."""
    captions: list[str]
    contents: list[str]
    degradations: list[list[Degradation]]
    cached: list[bool] = field(default_factory=list)

    @staticmethod
    def _join(items: list[str]) -> str:
        if len(items) == 1 or not any(items):
            return items[0] if len(items) == 1 else ""
        return "\n".join(f"[{i + 1}] {t}" for i, t in enumerate(items))

    @property
    def caption(self) -> str:
        return self._join(self.captions)

    @property
    def content(self) -> str:
        return self._join(self.contents)

    @property
    def degradation_text(self) -> str:
        """One restoration text for the batch: every degradation seen, at its most severe reading."""
        from .vocabulary import restoration_text
        return restoration_text(fuse(*self.degradations))


def caption_images(captioner: Captioner, images: torch.Tensor, settings: CaptionSettings,
                   findings: Sequence | None = None, fuse_findings: bool = True, cache: CaptionCache | None = CACHE,
                   progress: Callable[[int, int], None] | None = None) -> CaptionResult:
    """Caption an IMAGE batch ``[B, H, W, C]``: caption (cached), content and degradations per image.

    ``findings`` (one classifier Finding per image, or None) feed the "none" backend's caption and,
    with ``fuse_findings``, are fused into every backend's degradations. ``progress(done, total)``
    is called after each image (it may raise to interrupt; nothing is cached for unfinished images).
    """
    images = check_caption_image(images)
    if settings.max_tokens < 1:
        raise CaptionError(f"max_tokens must be at least 1; got {settings.max_tokens}")
    b = images.shape[0]
    if findings is not None and len(findings) not in (1, b):
        raise CaptionError(f"got {len(findings)} classifier findings for a batch of {b} images")
    result = CaptionResult([], [], [], [])
    for i in range(b):
        finding = None if findings is None else findings[i if len(findings) == b else 0]
        key = (image_hash(images[i]), captioner.identity,
               settings.key() + (json.dumps(degradation_sentence(findings_degradations(finding)))
                                 if captioner.backend == "none" else ""))
        text = cache.get(key) if cache is not None else None
        result.cached.append(text is not None)
        if text is None:
            text = captioner.caption(to_pil(images[i]), settings, finding)
            if cache is not None:
                cache.put(key, text)
        split = split_caption(text)
        degs = split.degradations
        if fuse_findings and finding is not None:
            degs = fuse(degs, findings_degradations(finding))
        result.captions.append(text)
        result.contents.append(split.content)
        result.degradations.append(degs)
        if progress is not None:
            progress(i + 1, b)
    return result
