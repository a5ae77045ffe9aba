"""Loading and saving M3UNet weights: safetensors only, with the config in the file's metadata.

A checkpoint is one ``.safetensors`` file whose metadata holds ``m3unet_config`` (JSON of
:class:`~m3unet.core.unet.M3UNetConfig`) so that it can be dropped into ComfyUI's ``models/m3unet``
folder as a single file. Pickled checkpoints (``.pt``, ``.ckpt``, ``.pth``) are refused: loading
them can run arbitrary code.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Callable, Generic, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .unet import M3UNet, M3UNetConfig

REPO = Path(__file__).resolve().parents[2]
DEFAULT_WEIGHTS = REPO / "weights" / "m3unet-default.safetensors"


class CheckpointError(ValueError):
    """A model file that cannot be used, with a message naming the file and the fix."""


def read_metadata(path: Path) -> dict:
    """The safetensors metadata of ``path`` (raises :class:`CheckpointError` on bad files)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model file not found: {path}. Put an M3UNet .safetensors file there "
                              f"or choose the shipped default ({DEFAULT_WEIGHTS.name}).")
    if path.suffix.lower() in (".pt", ".pth", ".ckpt", ".bin", ".pkl"):
        raise CheckpointError(f"{path.name}: pickled checkpoints are refused because loading them can run "
                              "arbitrary code; convert it to .safetensors (safetensors.torch.save_file).")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({e}); the download may be "
                              "incomplete or corrupt: download or copy it again.") from e


def load_model(path: Path | str | None = None, device: str | torch.device = "cpu") -> M3UNet:
    """Load an M3UNet from a safetensors file (default: the shipped weights), in eval mode."""
    path = Path(path) if path else DEFAULT_WEIGHTS
    meta = read_metadata(path)
    if "m3unet_config" not in meta:
        raise CheckpointError(f"{path.name} has no 'm3unet_config' metadata: it is not an M3UNet checkpoint "
                              "(for Real-ESRGAN/SwinIR-style models use ComfyUI's UpscaleModelLoader).")
    config = M3UNetConfig.from_dict(json.loads(meta["m3unet_config"]))
    model = M3UNet(config)
    state = load_file(str(path))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    bad = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    if missing or bad:
        raise CheckpointError(f"{path.name} does not match its config: {len(missing)} missing tensors "
                              f"{missing[:3]}, {len(bad)} with wrong shapes {bad[:3]}")
    model.load_state_dict({k: state[k].float() for k in expected})
    model.metadata = meta  # type: ignore[attr-defined]
    return model.eval().to(device=device, memory_format=torch.channels_last)


def save_model(model: M3UNet, path: Path | str, metadata: dict | None = None, half: bool = False) -> None:
    """Save ``model`` (optionally in float16 to halve the size) with its config in the metadata."""
    meta = {"m3unet_config": model.config.to_json(), "format": "m3unet/1"}
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    dtype = torch.float16 if half else torch.float32
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=meta)


def file_fingerprint(path: Path) -> tuple[str, int, int] | None:
    """``(resolved path, mtime_ns, size)`` of a file, or None if it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


T = TypeVar("T")


class FileCache(Generic[T]):
    """Objects loaded from files, reused while the file's fingerprint (:func:`file_fingerprint`:
    path, mtime, size) is unchanged; a changed file is loaded again and replaces its stale entry.
    Thread-safe (ComfyUI runs nodes from a worker thread, the UI lists files from another)."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[tuple[str, int, int], T]] = {}
        self._lock = threading.Lock()

    def get(self, path: Path, load: Callable[[], T]) -> T:
        """The object of ``path``, loaded by ``load()`` if it is not cached or the file changed.
        A missing file is not cached: ``load`` runs (and is expected to raise a clear error)."""
        fp = file_fingerprint(path)
        with self._lock:
            hit = self._items.get(fp[0]) if fp is not None else None
            if hit is not None and hit[0] == fp:
                return hit[1]
            obj = load()
            if fp is not None:
                self._items[fp[0]] = (fp, obj)
            return obj

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
