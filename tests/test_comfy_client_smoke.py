"""Smoke tests for the real ComfyUI host and the UI->API converter (core nodes only)."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from comfy_client import ComfyHost, PromptRejected, ui_to_api, widget_layout

pytestmark = pytest.mark.host


def _write_input_image(host: ComfyHost, seed: int = 0) -> tuple[str, np.ndarray]:
    """Save a random RGB PNG into the host's input folder; return (name, pixels)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    name = f"smoke_{uuid.uuid4().hex[:8]}.png"
    Image.fromarray(pixels).save(host.input_dir / name)
    return name, pixels


def _node(node_id: int, ntype: str, widgets: Any, inputs: list[dict[str, Any]] | None = None,
          outputs: list[dict[str, Any]] | None = None, mode: int = 0) -> dict[str, Any]:
    """A UI-format node as the ComfyUI front end saves it."""
    return {"id": node_id, "type": ntype, "pos": [100 * node_id, 100], "size": [200, 100],
            "flags": {}, "order": node_id - 1, "mode": mode, "inputs": inputs or [],
            "outputs": outputs or [], "properties": {"Node name for S&R": ntype},
            "widgets_values": widgets}


def _invert_workflow(image_name: str, prefix: str) -> dict[str, Any]:
    """UI workflow LoadImage -> ImageInvert -> SaveImage."""
    nodes = [
        _node(1, "LoadImage", [image_name, "image"],
              outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [1]},
                       {"name": "MASK", "type": "MASK", "links": None}]),
        _node(2, "ImageInvert", [],
              inputs=[{"name": "image", "type": "IMAGE", "link": 1}],
              outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [2]}]),
        _node(3, "SaveImage", [prefix],
              inputs=[{"name": "images", "type": "IMAGE", "link": 2}]),
    ]
    links = [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]]
    return {"id": str(uuid.uuid4()), "revision": 0, "last_node_id": 3, "last_link_id": 2,
            "nodes": nodes, "links": links, "groups": [], "config": {}, "extra": {},
            "version": 0.4}


def test_widget_layouts_of_core_nodes(comfy_object_info: dict[str, Any]) -> None:
    """widgets_values positions for V1 nodes (upload, seed control) and V3 nodes."""
    oi = comfy_object_info
    assert widget_layout(oi["LoadImage"]) == ["image", None]
    assert widget_layout(oi["SaveImage"]) == ["filename_prefix"]
    assert widget_layout(oi["ImageInvert"]) == []
    assert widget_layout(oi["KSampler"]) == ["seed", None, "steps", "cfg", "sampler_name",
                                             "scheduler", "denoise"]
    # V3 nodes: COMBO type with an "options" list; control_after_generate on PrimitiveInt
    assert oi["ImageBlend"]["input"]["required"]["blend_mode"][0] == "COMBO"
    assert widget_layout(oi["ImageBlend"]) == ["blend_factor", "blend_mode"]
    assert widget_layout(oi["PrimitiveInt"]) == ["value", None]
    assert widget_layout(oi["LoadImageMask"]) == ["image", "channel", None]


def test_invert_ui_workflow_roundtrip(comfy_host: ComfyHost,
                                      comfy_object_info: dict[str, Any]) -> None:
    """LoadImage -> ImageInvert -> SaveImage from a UI workflow; saved = 255 - input."""
    name, pixels = _write_input_image(comfy_host)
    prefix = f"smoke_inv_{uuid.uuid4().hex[:6]}"
    api = ui_to_api(_invert_workflow(name, prefix), comfy_object_info)
    assert api == {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix,
                                                    "images": ["2", 0]}},
    }
    entry = comfy_host.run(api, timeout=120)
    assert entry["status"]["status_str"] == "success", comfy_host.execution_error(entry)
    assert comfy_host.execution_error(entry) is None
    paths = comfy_host.output_images(entry)
    assert len(paths) == 1 and paths[0].name.startswith(prefix), paths
    saved = np.asarray(Image.open(paths[0]).convert("RGB")).astype(np.int16)
    expected = 255 - pixels.astype(np.int16)
    assert saved.shape == expected.shape
    assert np.abs(saved - expected).max() <= 1


def test_converted_widget_link_and_v3_node(comfy_host: ComfyHost,
                                           comfy_object_info: dict[str, Any]) -> None:
    """A seed widget converted to an input and fed by the V3 node PrimitiveInt."""
    name, pixels = _write_input_image(comfy_host, seed=1)
    prefix = f"smoke_noise_{uuid.uuid4().hex[:6]}"
    wf = _invert_workflow(name, prefix)
    wf["nodes"][1] = _node(2, "ImageAddNoise", [123, "randomize", 0.0],
                           inputs=[{"name": "image", "type": "IMAGE", "link": 1},
                                   {"name": "seed", "type": "INT", "widget": {"name": "seed"},
                                    "link": 3}],
                           outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [2]}])
    wf["nodes"].append(_node(4, "PrimitiveInt", [7, "fixed"],
                             outputs=[{"name": "INT", "type": "INT", "links": [3]}]))
    wf["nodes"].append({"id": 5, "type": "Note", "mode": 0, "widgets_values": ["hello"]})
    wf["links"].append([3, 4, 0, 2, 1, "INT"])
    api = ui_to_api(wf, comfy_object_info)
    assert api["2"] == {"class_type": "ImageAddNoise",
                        "inputs": {"image": ["1", 0], "seed": ["4", 0], "strength": 0.0}}
    assert api["4"] == {"class_type": "PrimitiveInt", "inputs": {"value": 7}}
    assert "5" not in api
    entry = comfy_host.run(api, timeout=120)
    assert entry["status"]["status_str"] == "success", comfy_host.execution_error(entry)
    saved = np.asarray(Image.open(comfy_host.output_images(entry)[0]).convert("RGB"))
    assert np.abs(saved.astype(np.int16) - pixels.astype(np.int16)).max() <= 1


def test_invalid_prompt_is_rejected(comfy_host: ComfyHost,
                                    comfy_object_info: dict[str, Any]) -> None:
    """A missing required input answers 400 -> PromptRejected with node_errors."""
    name, _ = _write_input_image(comfy_host, seed=2)
    api = ui_to_api(_invert_workflow(name, "smoke_bad"), comfy_object_info)
    del api["3"]["inputs"]["images"]
    with pytest.raises(PromptRejected) as info:
        comfy_host.queue(api)
    errors = info.value.node_errors
    assert "3" in errors, info.value.body
    assert any(e["type"] == "required_input_missing" for e in errors["3"]["errors"])


def test_pack_link_points_at_repo(comfy_host: ComfyHost) -> None:
    """custom_nodes/m3unet_pack is a symlink to the repo root."""
    link = comfy_host.base_dir / "custom_nodes" / "m3unet_pack"
    assert link.is_symlink()
    assert link.resolve() == Path(__file__).resolve().parent.parent
