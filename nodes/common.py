"""Glue shared by the M3UNet nodes: custom socket types, the models folder and model management.

* Socket types: ``M3UNET_MODEL`` (a :class:`M3UNetHandle`), ``M3UNET_EMBED`` (the RefineEncoder's
  image embedding, a float tensor ``[B, D]``), ``M3UNET_CONTROL`` (an ``m3unet.core.control.Control``)
  and ``DEGRADATION`` (a list with one ``m3unet.auto.classifier.Finding`` per image: labels,
  probabilities, severities).
* The ``m3unet`` models folder: ``<ComfyUI models>/m3unet`` plus the pack's own ``weights/``
  (which holds the shipped ``m3unet-default.safetensors`` and ``classifier-default.safetensors``),
  ``.safetensors`` files only; DegradationClassifier files are listed by their own loader only.
* Model management: the network is wrapped in ``comfy.model_patcher.ModelPatcher`` (as
  ``comfy/clip_vision.py`` does), so ComfyUI moves it to the torch device before use and can
  offload it when other models need the memory. Loaded models are cached per file path and
  modification time, so re-running a workflow does not read the file again.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import comfy.model_management as model_management
import comfy.model_patcher
import folder_paths
from comfy_api.latest import io

from ..m3unet.restore import Restorer
from ..m3unet.core import M3UNet
from ..m3unet.core import DEFAULT_WEIGHTS, CheckpointError, FileCache, file_fingerprint, load_model  # noqa: F401

CATEGORY = "M3UNet"
FOLDER_NAME = "m3unet"
EXTENSIONS = {".safetensors"}
DEFAULT_MODEL_NAME = DEFAULT_WEIGHTS.name
SHIPPED_WEIGHTS_DIR = DEFAULT_WEIGHTS.parent

M3UNetModel = io.Custom("M3UNET_MODEL")
M3UNetEmbed = io.Custom("M3UNET_EMBED")
M3UNetControl = io.Custom("M3UNET_CONTROL")
Degradation = io.Custom("DEGRADATION")

log = logging.getLogger("m3unet")


# ---------------------------------------------------------------------------- models folder
def user_models_dir() -> str:
    """``<ComfyUI models dir>/m3unet`` (follows ``--base-directory``)."""
    return os.path.join(folder_paths.models_dir, FOLDER_NAME)


def register_model_folder() -> None:
    """Add the ``m3unet`` folder to ``folder_paths``; extend an existing entry, never replace it.

    An entry may already exist (``extra_model_paths.yaml`` or another pack): its folders are
    kept (first), ours are appended, and ``.safetensors`` is added to its extensions.
    """
    ours = [user_models_dir(), str(SHIPPED_WEIGHTS_DIR)]
    entry = folder_paths.folder_names_and_paths.get(FOLDER_NAME)
    if entry is None:
        folder_paths.folder_names_and_paths[FOLDER_NAME] = (ours, set(EXTENSIONS))
    else:
        paths, exts = entry
        for p in ours:
            if p not in paths:
                paths.append(p)
        if isinstance(exts, set):
            exts.update(EXTENSIONS)
        else:
            exts = set(exts) | EXTENSIONS
            folder_paths.folder_names_and_paths[FOLDER_NAME] = (paths, exts)
    try:  # show users where to drop their own checkpoints
        os.makedirs(user_models_dir(), exist_ok=True)
    except OSError as e:
        log.debug("M3UNet: cannot create %s: %s", user_models_dir(), e)


def is_classifier_name(name: str) -> bool:
    """True if the ``m3unet`` folder entry ``name`` is a DegradationClassifier file (its metadata says so)."""
    from ..m3unet.auto import is_classifier_file
    full = folder_paths.get_full_path(FOLDER_NAME, name)
    return full is not None and is_classifier_file(full)


def is_blur_estimator_name(name: str) -> bool:
    """True if the ``m3unet`` folder entry ``name`` is a blur estimator file (``m3unet.auto.deblur``)."""
    from ..m3unet.auto import is_estimator_file
    full = folder_paths.get_full_path(FOLDER_NAME, name)
    return full is not None and is_estimator_file(full)


def model_names() -> list[str]:
    """M3UNet files of the ``m3unet`` folder for the loader's list, the shipped default first
    (classifier and blur estimator files are listed by their own nodes, not here)."""
    names = folder_paths.get_filename_list(FOLDER_NAME)
    return [DEFAULT_MODEL_NAME] + [n for n in names if n != DEFAULT_MODEL_NAME and not is_classifier_name(n)
                                   and not is_blur_estimator_name(n)]


def model_path(name: str) -> Path:
    """Full path of a model list entry; raises :class:`CheckpointError` naming the folders."""
    full = folder_paths.get_full_path(FOLDER_NAME, name)
    if full is not None:
        return Path(full)
    if name == DEFAULT_MODEL_NAME:
        return DEFAULT_WEIGHTS  # load_model explains that the shipped file is missing
    folders = ", ".join(folder_paths.get_folder_paths(FOLDER_NAME))
    raise CheckpointError(f"M3UNet model file {name!r} not found in the m3unet model folders ({folders}).")


# ---------------------------------------------------------------------------- model handle
class M3UNetHandle:
    """What flows through an ``M3UNET_MODEL`` socket: the network, its ModelPatcher, a Restorer."""

    def __init__(self, model: M3UNet, path: Path):
        self.model = model
        self.path = Path(path)
        self.patcher = comfy.model_patcher.ModelPatcher(
            model, load_device=model_management.get_torch_device(),
            offload_device=model_management.unet_offload_device())
        self.restorer = Restorer(model)

    @property
    def name(self) -> str:
        return self.path.name

    def ready(self) -> Restorer:
        """Ask ComfyUI's model management to put the network on its device; return the Restorer."""
        model_management.load_models_gpu([self.patcher])
        return self.restorer

    def __repr__(self) -> str:
        cfg = self.model.config
        return f"M3UNetHandle({self.name}, width={cfg.width}, embed_dim={cfg.embed_dim})"


_patchers: dict[int, object] = {}


def manage_model(network) -> None:
    """Hand a network the library loaded (a specialist, the blur estimator, a classifier) to ComfyUI's
    model management: wrapped in a ModelPatcher once, then loaded onto the torch device (ComfyUI
    frees other models first if memory is short, and may offload this one later)."""
    patcher = _patchers.get(id(network))
    if patcher is None or patcher.model is not network:
        patcher = comfy.model_patcher.ModelPatcher(network, load_device=model_management.get_torch_device(),
                                                   offload_device=model_management.unet_offload_device())
        _patchers[id(network)] = patcher
    model_management.load_models_gpu([patcher])


_handles: FileCache[M3UNetHandle] = FileCache()


def load_handle(path: Path) -> M3UNetHandle:
    """Load (or reuse) the model at ``path``; the cache is keyed by path, mtime and size.

    Library errors (:class:`CheckpointError`, a ValueError naming the file) propagate unchanged.
    """
    path = Path(path)
    if file_fingerprint(path) is None:
        load_model(path)  # raises CheckpointError("model file not found: ...")
        raise CheckpointError(f"model file not found: {path}")
    return _handles.get(path, lambda: M3UNetHandle(load_model(path, device=model_management.unet_offload_device()),
                                                   path))


def clear_cache() -> None:
    """Forget the loaded models (they are freed once no workflow output holds them)."""
    _handles.clear()


def deblur_batch(image, restore_one, describe_one, head: int, per_image: int = 100):
    """Run a deconvolve-then-clean-up tool image by image with a progress bar and interrupt checks.

    ``restore_one(i, progress)`` returns image ``i`` restored (``progress(None)`` after the
    deconvolution, then once per tile of the clean-up pass); ``describe_one(i)`` its report line.
    The bar counts hundredths of an image: the deconvolution takes the first ``head``, the clean-up
    pass the rest. Returns the restored batch and the report."""
    import comfy.utils
    import torch
    total = image.shape[0] * per_image
    pbar = comfy.utils.ProgressBar(total)
    outs, lines = [], []
    for i in range(image.shape[0]):
        start = i * per_image
        pbar.update_absolute(start, total)

        def tick(p, start=start) -> None:
            share = 0.0 if p is None else p.done / max(p.total, 1)
            pbar.update_absolute(start + head + int((per_image - head) * share), total)
            model_management.throw_exception_if_processing_interrupted()

        outs.append(restore_one(i, tick).to(model_management.intermediate_device()))
        lines.append((f"image {i + 1}: " if image.shape[0] > 1 else "") + describe_one(i))
        pbar.update_absolute(start + per_image, total)
    return torch.cat(outs), "\n".join(lines)
