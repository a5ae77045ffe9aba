"""Restore images with M3UNet: input checks, channels, tiling, conditioning and the sampler.

Images use ComfyUI's IMAGE layout ``[B, H, W, C]`` (float in [0, 1], or uint8 0-255), with
C = 1 (grey), 3 (RGB) or 4 (RGBA). The output has the input's size, dtype, layout and channels:
grey is restored as RGB and converted back; alpha is passed through untouched.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from . import diffusion, tiling
from .control import Control
from .text import TextEncoder, default_encoder
from .unet import M3UNet

DEFAULT_STEPS = 1
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 32
MIN_SIDE = 16
MAX_SIDE = 16384


class InputError(ValueError):
    """Bad input to the restorer; the message names the input and the fix."""


@dataclass
class Progress:
    """What a progress callback receives after each sampler step of each tile."""
    done: int
    total: int
    image_index: int
    tile_index: int
    step: int


def check_image(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """Validate an IMAGE-like tensor and return it as ``[B, H, W, C]``."""
    if not torch.is_tensor(image):
        raise InputError(f"{name} must be a tensor [B, H, W, C]; got {type(image).__name__}")
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4:
        raise InputError(f"{name} must be [B, H, W, C] (ComfyUI IMAGE); got shape {tuple(image.shape)}")
    b, h, w, c = image.shape
    if c not in (1, 3, 4):
        raise InputError(f"{name} has {c} channels; expected 1 (grey), 3 (RGB) or 4 (RGBA). "
                         "If it is [B, C, H, W], permute it to [B, H, W, C].")
    if b == 0:
        raise InputError(f"{name} is an empty batch")
    if min(h, w) < MIN_SIDE:
        raise InputError(f"{name} is {w}x{h} px; M3UNet needs at least {MIN_SIDE}x{MIN_SIDE} px. "
                         "Upscale it first (e.g. ImageScale) or use a larger crop.")
    if max(h, w) > MAX_SIDE:
        raise InputError(f"{name} is {w}x{h} px; the largest side supported is {MAX_SIDE} px. Downscale it first.")
    if image.is_floating_point():
        if not torch.isfinite(image).all():
            raise InputError(f"{name} contains NaN or infinite values; check the node that produced it.")
    elif image.dtype != torch.uint8:
        raise InputError(f"{name} has dtype {image.dtype}; expected float (0-1) or uint8 (0-255)")
    return image


def _to_rgb_float(x: torch.Tensor) -> torch.Tensor:
    """[H, W, C] any dtype -> [3, H, W] float32 in [0, 1]."""
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    x = x[..., :3] if x.shape[-1] >= 3 else x[..., :1].expand(*x.shape[:-1], 3)
    return x.clamp(0, 1).permute(2, 0, 1)


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
        """Sentence embeddings ``[N, 384]`` of the restoration texts."""
        return self.text_encoder.encode([t.strip() for t in texts])

    @torch.inference_mode()
    def embed_image(self, image: torch.Tensor) -> torch.Tensor:
        """Global image embeddings ``[B, embed_dim]`` (the RefineEncoder stage) of an IMAGE batch."""
        image = check_image(image)
        out = []
        for x in image:
            rgb = _to_rgb_float(x)[None].to(self.device).contiguous(memory_format=torch.channels_last)
            out.append(self.model.refine.embed(rgb).float().cpu())
        return torch.cat(out)

    @torch.inference_mode()
    def restore(self, image: torch.Tensor, text: str | Sequence[str] = "", steps: int = DEFAULT_STEPS,
                seed: int = 0, eta: float = 0.0, control: Control | None = None,
                image_embedding: torch.Tensor | None = None, tile: int = DEFAULT_TILE,
                overlap: int = DEFAULT_OVERLAP, progress: Callable[[Progress], None] | None = None) -> torch.Tensor:
        """Restore an IMAGE batch; returns a tensor of the same shape, dtype and channels.

        ``text`` is one string or one per image. ``control`` gives the per-pixel strength and an
        optional guidance image. ``progress`` is called after every step of every tile; it may
        raise to interrupt (nothing is written to the input).
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
        n_tiles = tiling.count(h, w, tile, overlap)
        total = b * n_tiles * steps
        done = 0
        for i in range(b):
            # Accumulate straight into the output when it is float32 RGB (no extra full-size buffer).
            direct = c == 3 and image.dtype == torch.float32
            acc = out[i] if direct else torch.zeros(h, w, 3)
            acc.zero_()
            for k, (ys, xs, weight) in enumerate(tiling.grid(h, w, tile, overlap)):
                crop = (slice(ys.start, ys.stop), slice(xs.start, xs.stop))
                x = _to_rgb_float(image[i][crop])
                g = _to_rgb_float(guide[i][crop]) if guide is not None else x
                s = strength[i:i + 1, :, crop[0], crop[1]]
                gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + i * 7919 + k) % (2 ** 63))

                def on_step(step: int, _steps: int, _x0: torch.Tensor) -> None:
                    nonlocal done
                    done += 1
                    if progress is not None:
                        progress(Progress(done, total, i, k, step))

                y = self._restore_tile(x, g, s, text_emb[i:i + 1], image_embedding[i:i + 1], steps, eta, gen, on_step)
                acc[crop] += (y * weight).permute(1, 2, 0)
            acc.clamp_(0, 1)
            if direct:
                continue
            if c == 1:
                res = (acc * torch.tensor([0.299, 0.587, 0.114])).sum(-1, keepdim=True)
            elif c == 4:
                res = torch.cat([acc, image[i][..., 3:].float() / (255 if image.dtype == torch.uint8 else 1)], -1)
            else:
                res = acc
            out[i] = (res * 255 + 0.5).clamp(0, 255).to(torch.uint8) if image.dtype == torch.uint8 else res.to(image.dtype)
        return out

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
