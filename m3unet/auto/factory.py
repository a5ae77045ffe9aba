"""One place that builds the automatic restorer: for the command line, the ComfyUI node and the evaluation.

It assembles the pool (M3UNet, the kernel-aware deblur, the shipped specialists beside the shipped
default model, the caller's models), the classifier and the restore policy. ``manage`` is applied to
every network it loads (a host's model management: ComfyUI wraps each in a ModelPatcher and moves
it to its device), so no model escapes the host's memory accounting.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..core.weights import load_model
from ..restore.pipeline import DEFAULT_TILE, Restorer
from .classifier import Classifier, load_classifier
from .plan import OrderTable
from .policy import DEFAULT_POLICY, RestorePolicy
from .pool import Pool, shipped_tools
from .restorer import SHIPPED_CLASSIFIER, AutoRestorer

SHIPPED = "shipped"


def _classifier(spec: Any, manage: Callable[[torch.nn.Module], Any] | None):
    """``"shipped"`` (None if its file is missing), a path, a ready callable, or None/False (none)."""
    if spec is None or spec is False:
        return None
    if callable(spec) and not isinstance(spec, (str, Path)):
        network = getattr(spec, "model", None)
        if manage is not None and isinstance(network, torch.nn.Module):
            manage(network)
        return spec
    path = SHIPPED_CLASSIFIER if spec == SHIPPED else Path(spec)
    if spec == SHIPPED and not path.is_file():
        return None
    network = load_classifier(path)
    if manage is not None:
        manage(network)
    return Classifier(network)


def build_auto_restorer(restorer: Restorer | None = None, *, model_path: str | Path | None = None,
                        classifier: Any = SHIPPED, pool_models: Sequence[Any] = (), kernel_deblur: bool = True,
                        specialists: bool = True, steps: int | None = None, tile: int = DEFAULT_TILE,
                        policy: RestorePolicy | None = None, order_table: OrderTable | None = None,
                        manage: Callable[[torch.nn.Module], Any] | None = None) -> AutoRestorer:
    """The automatic restorer.

    ``restorer``: the main M3UNet (loaded from ``model_path``, default the shipped model, if not
    given). ``classifier``: ``"shipped"`` (the default; restoring blind when its file is missing),
    a weights path, a callable ``IMAGE -> list[Finding]``, or None. ``pool_models``: the caller's
    :class:`~m3unet.auto.pool.PoolModel` / :class:`~m3unet.auto.pool.M3UNetPoolModel` entries.
    ``kernel_deblur`` / ``specialists``: add the shipped tools (the specialists only beside the
    shipped default model). ``steps``: sampler steps of every M3UNet pass (None: per task, from
    the policy). ``manage``: called with every network loaded here.
    """
    policy = policy or DEFAULT_POLICY
    if restorer is None:
        restorer = Restorer(load_model(model_path))
    tools = shipped_tools(restorer, kernel_deblur=kernel_deblur, specialists=specialists, model_path=model_path,
                          policy=policy)
    if manage is not None:
        for tool in tools:
            network = getattr(tool, "estimator", None)
            if network is None:
                network = getattr(getattr(tool, "restorer", None), "model", None)
            if network is not None and network is not restorer.model:
                manage(network)
    pool = Pool(restorer, list(pool_models) + tools, steps=steps, tile=tile, policy=policy)
    return AutoRestorer(pool, _classifier(classifier, manage), order_table, policy=policy)
