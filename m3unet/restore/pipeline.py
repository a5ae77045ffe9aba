"""Restore images with M3UNet: input checks, channels, tiling, conditioning and the sampler.

Images use ComfyUI's IMAGE layout ``[B, H, W, C]`` (float in [0, 1], or uint8 0-255), with
C = 1 (grey), 3 (RGB) or 4 (RGBA). The output has the input's size, dtype, layout and channels:
grey is restored as RGB and converted back; alpha is passed through untouched.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..core import diffusion, tiling
from ..core.control import Control
from ..core.text import TextEncoder, default_encoder, empty_text_embedding
from ..core.image import MAX_SIDE, MIN_SIDE, InputError, check_image, like_input, to_rgb_float  # noqa: F401
from ..core.unet import M3UNet

DEFAULT_STEPS = 1
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 32
MIN_TILE = 128  # the out-of-memory fallback halves the tile down to this

log = logging.getLogger("m3unet")


def _free_accelerator_memory(_tile: int) -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class Progress:
    """What a progress callback receives after each sampler step of each tile."""
    done: int
    total: int
    image_index: int
    tile_index: int
    step: int


class Restorer:
    """The M3UNet restoration pipeline (library entry point; the ComfyUI nodes wrap it)."""

    def __init__(self, model: M3UNet, text_encoder: TextEncoder | None = None):
        self.model = model
        self._text_encoder = text_encoder

    @property
    def text_encoder(self) -> TextEncoder:
        if self._text_encoder is None:
            self._text_encoder = default_encoder()
        return self._text_encoder

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Sentence embeddings ``[N, 384]`` of the restoration texts (only empty texts: the shipped
        embedding of ``""``, with no encoder to load, unless one is already loaded)."""
        texts = [t.strip() for t in texts]
        empty = empty_text_embedding() if self._text_encoder is None and not any(texts) else None
        if empty is not None:
            return empty.expand(len(texts), -1).clone()
        return self.text_encoder.encode(texts)

    @torch.inference_mode()
    def embed_image(self, image: torch.Tensor) -> torch.Tensor:
        """Global image embeddings ``[B, embed_dim]`` (the RefineEncoder stage) of an IMAGE batch."""
        image = check_image(image)
        out = []
        for x in image:
            rgb = to_rgb_float(x)[None].to(self.device).contiguous(memory_format=torch.channels_last)
            out.append(self.model.refine.embed(rgb).float().cpu())
        return torch.cat(out)

    @torch.inference_mode()
    def restore(self, image: torch.Tensor, text: str | Sequence[str] = "", steps: int = DEFAULT_STEPS,
                seed: int = 0, eta: float = 0.0, control: Control | None = None,
                image_embedding: torch.Tensor | None = None, tile: int = DEFAULT_TILE,
                overlap: int = DEFAULT_OVERLAP, progress: Callable[[Progress], None] | None = None,
                on_oom: Callable[[int], None] | None = None) -> torch.Tensor:
        """Restore an IMAGE batch; returns a tensor of the same shape, dtype and channels.

        ``text`` is one string or one per image. ``control`` gives the per-pixel strength and an
        optional guidance image. ``progress`` is called after every step of every tile; it may
        raise to interrupt (nothing is written to the input). Out of memory, the image is restored
        again with half the tile (down to :data:`MIN_TILE` px; as ComfyUI's upscale node does);
        ``on_oom(tile)`` is called first to free memory (default: empty the accelerator's cache).
        """
        image = check_image(image)
        b, h, w, c = image.shape
        texts = [text] * b if isinstance(text, str) else list(text)
        if len(texts) not in (1, b):
            raise InputError(f"text: got {len(texts)} texts for a batch of {b} images")
        texts = texts * b if len(texts) == 1 else texts
        if not 1 <= int(steps) <= 1000:
            raise InputError(f"steps must be between 1 and 1000; got {steps}")
        if tile < 64 or overlap < 0 or overlap >= tile:
            raise InputError(f"tile must be >= 64 and 0 <= overlap < tile; got tile={tile}, overlap={overlap}")
        control = control or Control()
        guide = None
        if control.image is not None:
            guide = check_image(control.image, "control image")
            if guide.shape[1:3] != (h, w):
                raise InputError(f"control image is {guide.shape[2]}x{guide.shape[1]} but the image is {w}x{h}; "
                                 "resize one of them to match")
        strength = control.strength_map(b, h, w)
        text_emb = self.embed_text(texts).to(self.device)
        if image_embedding is None:
            image_embedding = self.embed_image(guide if guide is not None else image)
        elif (image_embedding.ndim != 2 or image_embedding.shape[-1] != self.model.config.embed_dim
              or image_embedding.shape[0] not in (1, b)):
            raise InputError(f"image embedding has shape {tuple(image_embedding.shape)}; expected "
                             f"[{b}, {self.model.config.embed_dim}] from the RefineEncoder node of the same model")
        image_embedding = image_embedding.to(self.device).float().expand(b, -1)

        out = torch.empty_like(image)
        counter = {"done": 0, "total": b * tiling.count(h, w, tile, overlap) * steps}
        for i in range(b):
            start = counter["done"]
            while True:
                try:
                    self._restore_image(image, guide, strength, text_emb, image_embedding, out, i, steps, seed, eta,
                                        tile, overlap, counter, progress)
                    break
                except torch.OutOfMemoryError:
                    if tile // 2 < MIN_TILE:
                        raise
                    tile //= 2
                    overlap = min(overlap, tile // 4)
                    log.warning("M3UNet: out of memory, retrying with %d px tiles", tile)
                    (on_oom or _free_accelerator_memory)(tile)
                    counter["done"] = start
                    counter["total"] = start + (b - i) * tiling.count(h, w, tile, overlap) * steps
        return out

    def _restore_image(self, image, guide, strength, text_emb, image_embedding, out, i: int, steps: int, seed: int,
                       eta: float, tile: int, overlap: int, counter: dict, progress) -> None:
        """Restore image ``i`` of the batch tile by tile into ``out[i]``."""
        _, h, w, c = image.shape
        # Accumulate straight into the output when it is float32 RGB (no extra full-size buffer).
        direct = c == 3 and image.dtype == torch.float32
        acc = out[i] if direct else torch.zeros(h, w, 3)
        acc.zero_()
        for k, (ys, xs, weight) in enumerate(tiling.grid(h, w, tile, overlap)):
            crop = (slice(ys.start, ys.stop), slice(xs.start, xs.stop))
            x = to_rgb_float(image[i][crop])
            g = to_rgb_float(guide[i][crop]) if guide is not None else x
            s = strength[i:i + 1, :, crop[0], crop[1]]
            gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + i * 7919 + k) % (2 ** 63))

            def on_step(step: int, _steps: int, _x0: torch.Tensor, k: int = k) -> None:
                counter["done"] += 1
                if progress is not None:
                    progress(Progress(counter["done"], counter["total"], i, k, step))

            y = self._restore_tile(x, g, s, text_emb[i:i + 1], image_embedding[i:i + 1], steps, eta, gen, on_step)
            acc[crop] += (y * weight).permute(1, 2, 0)
        acc.clamp_(0, 1)
        if not direct:
            out[i] = like_input(acc, image[i])

    def _restore_tile(self, x: torch.Tensor, guide: torch.Tensor, strength: torch.Tensor, text: torch.Tensor,
                      image_emb: torch.Tensor, steps: int, eta: float, gen: torch.Generator,
                      on_step: Callable) -> torch.Tensor:
        """Restore one tile ([3, h, w] float): pad to the U-Net's multiple, sample, crop back."""
        m = self.model.multiple
        h, w = x.shape[-2:]
        ph, pw = (-h) % m, (-w) % m
        mode = "reflect" if min(h, w) > max(ph, pw) else "replicate"

        def prep(t: torch.Tensor) -> torch.Tensor:
            t = F.pad(t[None], (0, pw, 0, ph), mode=mode) if (ph or pw) else t[None]
            return t.to(self.device).contiguous(memory_format=torch.channels_last)

        y, g, s = prep(x), prep(guide), prep(strength[0])
        feats = self.model.refine.features(g)
        one = torch.ones(1, device=self.device)

        def denoise(x_t: torch.Tensor, t: float) -> torch.Tensor:
            # Pixel-level strength: blend the prediction with the input, so 0 keeps it exactly.
            return torch.lerp(y, self.model(x_t, one * t, text, image_emb, feats), s)

        x0 = diffusion.sample(denoise, y, steps, eta, gen, on_step)
        return x0[0, :, :h, :w].float().cpu()
