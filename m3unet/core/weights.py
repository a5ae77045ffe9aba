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


_INT_FIELDS = ("width", "mid_blocks", "cond_dim", "embed_dim", "text_dim", "text_tokens", "image_tokens", "heads")
_LIST_FIELDS = ("enc_blocks", "dec_blocks", "dilations", "attn_levels")
_MAX_SIZE, _MAX_ITEM, _MAX_LEVELS = 4096, 64, 8  # far above any trained network; a damaged file is not built
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_config(config: dict, name: str) -> M3UNetConfig:
    """The :class:`M3UNetConfig` of a checkpoint's ``m3unet_config`` metadata, checked: every key
    known (an unknown one would silently build a different network), sizes positive whole numbers,
    lists of the right lengths. Raises :class:`CheckpointError` naming ``name``."""
    if not isinstance(config, dict):
        raise CheckpointError(f"{name}: its 'm3unet_config' metadata is not a JSON object; the file is damaged "
                              "or not an M3UNet checkpoint")
    known = set(M3UNetConfig.__dataclass_fields__)
    unknown = sorted(set(config) - known)
    if unknown:
        raise CheckpointError(f"{name}: unknown config keys {unknown} (known: {sorted(known)}); the file was written "
                              "by another version of M3UNet or edited: update the pack or use a matching checkpoint")
    problems = []
    for key in _INT_FIELDS:
        if key in config and (type(config[key]) is not int or not 1 <= config[key] <= _MAX_SIZE):
            problems.append(f"{key}={config[key]!r} (a whole number from 1 to {_MAX_SIZE})")
    for key in _LIST_FIELDS:
        if key not in config:
            continue
        v = config[key]
        low = 0 if key == "attn_levels" else 1
        if (not isinstance(v, list) or not all(type(x) is int and low <= x <= _MAX_ITEM for x in v)
                or len(v) > _MAX_LEVELS or (key != "attn_levels" and not v)):
            problems.append(f"{key}={v!r} (a list of at most {_MAX_LEVELS} whole numbers from {low} to {_MAX_ITEM})")
    if problems:
        raise CheckpointError(f"{name}: invalid config values: {'; '.join(problems)}; the file is damaged or edited")
    cfg = M3UNetConfig.from_dict(config)
    if len(cfg.dec_blocks) != len(cfg.enc_blocks):
        raise CheckpointError(f"{name}: invalid config: enc_blocks {cfg.enc_blocks} and dec_blocks {cfg.dec_blocks} "
                              "must have the same length")
    if cfg.width % cfg.heads:
        raise CheckpointError(f"{name}: invalid config: width {cfg.width} must be a multiple of heads {cfg.heads}")
    return cfg


def check_state(state: dict[str, torch.Tensor], name: str) -> None:
    """Every tensor of a checkpoint floating point and finite, else :class:`CheckpointError` naming
    ``name`` and the first tensors at fault (an integer or NaN network gives a black or unchanged image)."""
    not_float = sorted(k for k, v in state.items() if v.dtype not in FLOAT_DTYPES)
    if not_float:
        raise CheckpointError(f"{name}: {len(not_float)} tensors are not floating point (e.g. {not_float[0]}: "
                              f"{state[not_float[0]].dtype}); the file is not M3UNet weights or was converted "
                              "wrongly: use the original .safetensors file")
    bad = sorted(k for k, v in state.items() if not torch.isfinite(v).all())
    if bad:
        raise CheckpointError(f"{name}: {len(bad)} tensors hold NaN or infinite values (e.g. {bad[0]}); the training "
                              "run diverged or the file is damaged: use an earlier checkpoint or the shipped weights")


def load_model(path: Path | str | None = None, device: str | torch.device = "cpu") -> M3UNet:
    """Load an M3UNet from a safetensors file (default: the shipped weights), in eval mode.

    The file is checked first (:func:`check_config`, :func:`check_state`, the tensors' names and
    shapes against the config): anything wrong is a :class:`CheckpointError` naming the file.
    """
    path = Path(path) if path else DEFAULT_WEIGHTS
    meta = read_metadata(path)
    if "m3unet_config" not in meta:
        raise CheckpointError(f"{path.name} has no 'm3unet_config' metadata: it is not an M3UNet checkpoint "
                              "(for Real-ESRGAN/SwinIR-style models use ComfyUI's UpscaleModelLoader).")
    try:
        raw = json.loads(meta["m3unet_config"])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path.name}: its 'm3unet_config' metadata is not JSON ({e}); the file is damaged") from e
    config = check_config(raw, path.name)
    try:
        model = M3UNet(config)
    except (RuntimeError, ValueError, TypeError, ZeroDivisionError) as e:
        raise CheckpointError(f"{path.name}: its config does not build a network ({e}); the file is damaged or "
                              "edited") from e
    state = load_file(str(path))
    check_state(state, path.name)
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
