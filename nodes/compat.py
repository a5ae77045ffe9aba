"""The ComfyUI names that differ between the versions the pack supports, in one place.

The pack is tested on ComfyUI 0.3.75 and checked against the newest ComfyUI sources that could be
read (``docs/compatibility.md`` lists every ComfyUI name the pack uses and its status in both).
What changed between them is looked up here, never assumed:

* ``io.ControlAfterGenerate`` (newer): a seed widget's control mode can be given (``fixed``); in
  0.3.75 ``control_after_generate`` is a plain bool (``True`` adds the control widget, whose
  default the front end sets to ``randomize``; the pack's front-end extension
  ``web/js/m3unet_seeds.js`` sets new nodes to ``fixed`` there).
* ``io.Schema.search_aliases`` (newer): other names the node search finds; dropped on 0.3.75.
* ``ComfyAPI.node_replacement`` and ``io.NodeReplace`` (newer, called from
  ``ComfyExtension.on_load``, which 0.3.75 does not call): old node ids that workflows saved before
  a rename still load as the new node.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

from comfy_api.latest import io

log = logging.getLogger("m3unet")

SEED_MAX = 0xFFFFFFFFFFFFFFFF
# Schema fields newer ComfyUI versions added that the pack sets; dropped where the Schema lacks them.
OPTIONAL_SCHEMA_FIELDS = ("search_aliases",)


def fixed_control() -> Any:
    """``control_after_generate`` for a seed that should stay as it is after each run."""
    mode = getattr(io, "ControlAfterGenerate", None)
    return mode.fixed if mode is not None and hasattr(mode, "fixed") else True


def seed_input(tooltip: str, name: str = "seed") -> io.Int.Input:
    """A seed widget (0 .. 2**64-1) whose control-after-generate starts at ``fixed``: the result of
    these nodes does not change with the seed in their default settings, so a new run of an
    unchanged graph is answered from ComfyUI's cache instead of recomputed."""
    return io.Int.Input(name, default=0, min=0, max=SEED_MAX, control_after_generate=fixed_control(),
                        tooltip=tooltip)


def schema_fields() -> set[str] | None:
    """Field names ``io.Schema`` accepts (None when it is not a dataclass: then nothing is dropped)."""
    if not dataclasses.is_dataclass(io.Schema):
        return None
    return {f.name for f in dataclasses.fields(io.Schema)}


def schema(**kwargs: Any) -> io.Schema:
    """``io.Schema(**kwargs)`` without the newer optional fields this ComfyUI does not know."""
    fields = schema_fields()
    if fields is not None:
        for name in OPTIONAL_SCHEMA_FIELDS:
            if name in kwargs and name not in fields:
                kwargs.pop(name)
    return io.Schema(**kwargs)


async def register_replacements(pairs: list[tuple[str, str, list[str]]]) -> int:
    """Tell ComfyUI that workflows naming an old node id mean the new one.

    ``pairs``: ``(new_node_id, old_node_id, old_widget_ids)``. Needs ``io.NodeReplace`` and
    ``ComfyAPI().node_replacement`` (newer ComfyUI); returns how many were registered (0 where the
    API is missing). A failure is logged, never raised: loading the nodes matters more."""
    replace = getattr(io, "NodeReplace", None)
    try:
        from comfy_api.latest import ComfyAPI
    except ImportError:
        return 0
    if replace is None or not hasattr(ComfyAPI, "NodeReplacement"):
        return 0
    done = 0
    try:
        api = ComfyAPI()
        for new, old, widgets in pairs:
            await api.node_replacement.register(replace(new_node_id=new, old_node_id=old, old_widget_ids=widgets))
            done += 1
    except Exception as e:  # noqa: BLE001 - an API change must not stop the pack from loading
        log.warning("M3UNet: could not register the node id replacements (%s); workflows saved with old "
                    "node ids show those nodes as missing", e)
    return done
