"""M3UNet: the modified conditional U-Net denoiser (paper Sec. 3.4, Fig. 3).

A 4-level U-Net of NAFNet blocks (Chen et al. 2022: LayerNorm, depth-wise conv, SimpleGate;
zero-initialised residual scales), conditioned on
  * the diffusion time ``t`` and a global vector (time + text embedding + image embedding), which
    modulates every block (channel attention and FiLM; this replaces NAFNet's global-pooling channel
    attention so that the network is tile-invariant),
  * text and image tokens through cross attention at the two coarsest levels,
  * pixel control: the control image's refine features injected at every level
    (:class:`m3unet.core.control.ControlAttention`).
It predicts the clean image as a residual on its input: ``x0 = x_t + R(x_t, t, cond)``.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .control import ControlAttention
from .refine import LayerNorm2d, RefineEncoder
from .text import EMBED_DIM


@dataclass
class M3UNetConfig:
    """Hyper-parameters of :class:`M3UNet` (saved as config.json next to the weights)."""
    width: int = 16
    enc_blocks: list[int] = field(default_factory=lambda: [1, 1, 2])
    mid_blocks: int = 2
    dec_blocks: list[int] = field(default_factory=lambda: [1, 1, 1])
    dilations: list[int] = field(default_factory=lambda: [3])
    cond_dim: int = 128
    embed_dim: int = 256
    text_dim: int = EMBED_DIM
    text_tokens: int = 4
    image_tokens: int = 4
    heads: int = 2
    attn_levels: list[int] = field(default_factory=lambda: [2, 3])

    @property
    def levels(self) -> int:
        return len(self.enc_blocks) + 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_dict(cls, d: dict) -> "M3UNetConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class SimpleGate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    """NAFNet block with global-vector modulation (channel attention + FiLM) instead of SCA."""

    def __init__(self, c: int, cond_dim: int):
        super().__init__()
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, 2 * c, 1)
        self.dw = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.conv2 = nn.Conv2d(c, c, 1)
        self.norm2 = LayerNorm2d(c)
        self.conv3 = nn.Conv2d(c, 2 * c, 1)
        self.conv4 = nn.Conv2d(c, c, 1)
        self.sg = SimpleGate()
        self.mod = nn.Linear(cond_dim, 3 * c)
        nn.init.zeros_(self.mod.weight)
        nn.init.zeros_(self.mod.bias)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        ca, scale, shift = self.mod(g)[:, :, None, None].chunk(3, dim=1)
        y = self.sg(self.dw(self.conv1(self.norm1(x))))
        y = self.conv2(y * (1 + ca))
        x = x + y * self.beta
        y = self.norm2(x) * (1 + scale) + shift
        y = self.conv4(self.sg(self.conv3(y)))
        return x + y * self.gamma


class CrossAttention(nn.Module):
    """Pixels (queries) attend to condition tokens (text and image), multi-head."""

    def __init__(self, c: int, token_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = LayerNorm2d(c)
        self.q = nn.Conv2d(c, c, 1)
        self.kv = nn.Linear(token_dim, 2 * c)
        self.out = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = h.shape
        q = self.q(self.norm(h)).reshape(b, self.heads, c // self.heads, hh * ww).transpose(2, 3)
        k, v = self.kv(tokens).reshape(b, -1, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v)  # [b, heads, hw, c/heads]
        return h + self.out(o.transpose(2, 3).reshape(b, c, hh, ww))


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of t in [0, 1] (DDPM/Transformer style)."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=torch.float32) / half).to(t.device)
    args = t.float()[:, None] * 1000.0 * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class M3UNet(nn.Module):
    """The full model: RefineEncoder (image embedding + control features) and the conditional U-Net."""

    def __init__(self, config: M3UNetConfig | None = None):
        super().__init__()
        cfg = self.config = config or M3UNetConfig()
        widths = [cfg.width * 2 ** i for i in range(cfg.levels)]
        self.widths = widths
        self.refine = RefineEncoder(cfg.width, cfg.levels, cfg.dilations, cfg.embed_dim)
        d = cfg.cond_dim
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.text_vec = nn.Linear(cfg.text_dim, d)
        self.image_vec = nn.Linear(cfg.embed_dim, d)
        self.text_tok = nn.Linear(cfg.text_dim, cfg.text_tokens * d)
        self.image_tok = nn.Linear(cfg.embed_dim, cfg.image_tokens * d)
        self.null_tok = nn.Parameter(torch.zeros(1, 1, d))
        self.intro = nn.Conv2d(3, widths[0], 3, padding=1)
        self.ctrl = nn.ModuleList(ControlAttention(c, c) for c in widths)
        self.enc = nn.ModuleList(nn.ModuleList(NAFBlock(widths[i], d) for _ in range(n))
                                 for i, n in enumerate(cfg.enc_blocks))
        self.downs = nn.ModuleList(nn.Conv2d(widths[i], widths[i + 1], 2, stride=2) for i in range(cfg.levels - 1))
        self.mid = nn.ModuleList(NAFBlock(widths[-1], d) for _ in range(cfg.mid_blocks))
        self.ups = nn.ModuleList(nn.Sequential(nn.Conv2d(widths[i + 1], widths[i] * 4, 1), nn.PixelShuffle(2))
                                 for i in range(cfg.levels - 1))
        self.dec = nn.ModuleList(nn.ModuleList(NAFBlock(widths[i], d) for _ in range(n))
                                 for i, n in enumerate(cfg.dec_blocks))
        self.attn = nn.ModuleDict({f"enc{i}": CrossAttention(widths[i], d, cfg.heads)
                                   for i in cfg.attn_levels if i < cfg.levels - 1})
        self.attn_mid = CrossAttention(widths[-1], d, cfg.heads)
        self.attn_dec = nn.ModuleDict({f"dec{i}": CrossAttention(widths[i], d, cfg.heads)
                                       for i in cfg.attn_levels if i < cfg.levels - 1})
        self.ending = nn.Conv2d(widths[0], 3, 3, padding=1)
        nn.init.zeros_(self.ending.weight)  # starts as the identity (x0 = x_t)
        nn.init.zeros_(self.ending.bias)

    def grow_from(self, smaller: "M3UNet") -> list[str]:
        """Load ``smaller``'s weights into this deeper model and return the names of the new tensors.

        Function-preserving growth (Net2Net, Chen et al. 2016): both configs must agree except that
        this one may have more NAF blocks per level. Old blocks keep their index; the extra ones come
        after them and keep their zero-initialised residual scales (``beta``, ``gamma``) and
        modulation, so they start as the identity and the grown model computes exactly what
        ``smaller`` did until training moves them.
        """
        mine, theirs = asdict(self.config), asdict(smaller.config)
        depth = ("enc_blocks", "mid_blocks", "dec_blocks")
        other = [k for k in mine if k not in depth and mine[k] != theirs[k]]
        if other:
            raise ValueError(f"cannot grow: the configs differ in {other}, not only in the block counts")
        as_list = lambda v: v if isinstance(v, list) else [v]  # noqa: E731
        fewer = [k for k in depth if len(as_list(mine[k])) != len(as_list(theirs[k]))
                 or any(a < b for a, b in zip(as_list(mine[k]), as_list(theirs[k])))]
        if fewer:
            raise ValueError(f"cannot grow: {fewer} would lose blocks ({mine} vs {theirs})")
        own = self.state_dict()
        for name, value in smaller.state_dict().items():
            if own[name].shape != value.shape:
                raise ValueError(f"cannot grow: {name} has shape {tuple(value.shape)}, expected {tuple(own[name].shape)}")
            own[name] = value
        self.load_state_dict(own)
        return sorted(set(own) - set(smaller.state_dict()))

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this (the pipeline pads)."""
        return 2 ** (self.config.levels - 1)

    def condition(self, t: torch.Tensor, text: torch.Tensor, image_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Global vector ``[B, cond_dim]`` and tokens ``[B, T, cond_dim]`` from time, text and image."""
        cfg = self.config
        g = self.time_mlp(timestep_embedding(t, cfg.cond_dim)) + self.text_vec(text) + self.image_vec(image_emb)
        b = text.shape[0]
        tokens = torch.cat([self.null_tok.expand(b, 1, -1),
                            self.text_tok(text).reshape(b, cfg.text_tokens, -1),
                            self.image_tok(image_emb).reshape(b, cfg.image_tokens, -1)], 1)
        return g, tokens

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor, image_emb: torch.Tensor,
                control_feats: list[torch.Tensor]) -> torch.Tensor:
        """Predict the clean image x0 from ``x_t`` ([B, 3, H, W] with H, W multiples of ``multiple``)."""
        g, tokens = self.condition(t, text, image_emb)
        h = self.intro(x_t * 2 - 1)
        skips = []
        for i, blocks in enumerate(self.enc):
            h = self.ctrl[i](h, control_feats[i])
            for blk in blocks:
                h = blk(h, g)
            if f"enc{i}" in self.attn:
                h = self.attn[f"enc{i}"](h, tokens)
            skips.append(h)
            h = self.downs[i](h)
        h = self.ctrl[-1](h, control_feats[-1])
        for blk in self.mid:
            h = blk(h, g)
        h = self.attn_mid(h, tokens)
        for i in reversed(range(len(self.dec))):
            h = self.ups[i](h) + skips[i]
            for blk in self.dec[i]:
                h = blk(h, g)
            if f"dec{i}" in self.attn_dec:
                h = self.attn_dec[f"dec{i}"](h, tokens)
        return x_t + self.ending(h)
