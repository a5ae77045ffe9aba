"""Bridge diffusion from the low-quality image to the clean one, and its seeded sampler.

Forward process (a Brownian bridge, as in InDI, Delbracio & Milanfar 2023, and the residual
shift of ResShift, Yue et al. 2023): for t in [0, 1]

    x_t = (1 - t) * x0 + t * y + sigma * sqrt(t (1 - t)) * eps,

so x_1 = y is the degraded image itself and x_0 the clean one. The model predicts x0 from
(x_t, t, conditions). Sampling starts at t=1 from y (not from pure noise), so one step is
already a full restoration; further steps re-noise to smaller t and refine. Each update is the
bridge posterior given the predicted x0 (a DDIM-like step): the noise re-used from x_t is mixed
with fresh seeded noise by ``eta`` (0 = deterministic, 1 = fully stochastic). Measured on
validation photos, the deterministic path is clearly better than re-noising with fresh noise after
the first step (e.g. noise sigma 25 at 3 steps: 27.5 vs 25.8 dB, early checkpoint).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

BRIDGE_SIGMA = 0.1


def schedule(steps: int) -> list[float]:
    """Times ``1 = t_0 > t_1 > ... > t_steps = 0`` (uniform; the net sees t=1 first)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1; got {steps}")
    return [1.0 - i / steps for i in range(steps + 1)]


def noise_std(t: float | torch.Tensor, sigma: float = BRIDGE_SIGMA):
    """Standard deviation of the bridge noise at time t."""
    if torch.is_tensor(t):
        return sigma * torch.sqrt((t * (1 - t)).clamp(min=0))
    return sigma * math.sqrt(max(t * (1 - t), 0.0))


def q_sample(x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Draw x_t of the forward bridge for a batch (``t`` of shape [B])."""
    tt = t.view(-1, 1, 1, 1)
    return (1 - tt) * x0 + tt * y + noise_std(tt) * noise


def sample_times(batch: int, gen: torch.Generator, p_one: float = 0.5) -> torch.Tensor:
    """Training times: t=1 (the one-step restoration) with probability ``p_one``, else U(0, 1)."""
    t = torch.rand(batch, generator=gen)
    one = torch.rand(batch, generator=gen) < p_one
    return torch.where(one, torch.ones_like(t), t)


Denoiser = Callable[[torch.Tensor, float], torch.Tensor]


def sample(denoise: Denoiser, y: torch.Tensor, steps: int, eta: float = 0.0,
           gen: torch.Generator | None = None,
           callback: Callable[[int, int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Run the bridge sampler from ``x_1 = y`` to t=0.

    ``denoise(x_t, t)`` returns the predicted clean image. ``callback(i, steps, x0_pred)`` is called
    after each step (progress bars, previews, interruption checks). Seeded by ``gen``.
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta (stochasticity) must be in [0, 1]; got {eta}")
    ts = schedule(steps)
    x = y
    x0 = y
    for i in range(steps):
        t, s = ts[i], ts[i + 1]
        x0 = denoise(x, t)
        if s > 0:
            std_t, std_s = noise_std(t), noise_std(s)
            fresh = torch.randn(x.shape, generator=gen).to(x)
            if std_t > 0:
                implied = (x - (1 - t) * x0 - t * y) / std_t
                eps = math.sqrt(1 - eta ** 2) * implied + eta * fresh
            else:  # leaving t=1 there is no noise to re-use: eta=0 stays deterministic
                eps = eta * fresh
            x = (1 - s) * x0 + s * y + std_s * eps
        if callback is not None:
            callback(i, steps, x0)
    return x0
