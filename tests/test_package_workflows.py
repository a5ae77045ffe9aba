"""The shipped workflow files themselves (no host): what the front end checks when it loads them.

Each link must sit on the input slot that names it and the output slot that lists it (the front end
otherwise logs "Expected node to match patched data" and rewires it), workflow ids are distinct,
a Load Checkpoint carries its model's download entry (the front end's missing-model prompt), and
only workflows/ of ComfyUI's template folder names exists (0.3.75 serves the first one found).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
TEMPLATE_FOLDERS = ["example_workflows", "example", "examples", "workflow", "workflows"]  # ComfyUI's order


def load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_links_sit_on_the_slots_that_name_them(workflow: Path) -> None:
    ui = load(workflow)
    nodes = {n["id"]: n for n in ui["nodes"]}
    for link_id, origin, oslot, target, tslot, _type in ui["links"]:
        inputs = nodes[target].get("inputs") or []
        assert tslot < len(inputs) and inputs[tslot].get("link") == link_id, (
            f"link {link_id}: input slot {tslot} of node {target} ({nodes[target]['type']}) is "
            f"{inputs[tslot]['name'] if tslot < len(inputs) else 'missing'}, which does not hold it")
        outputs = nodes[origin].get("outputs") or []
        assert oslot < len(outputs) and link_id in (outputs[oslot].get("links") or []), (link_id, origin, oslot)
    assert ui["last_link_id"] >= max(link[0] for link in ui["links"])
    assert ui["last_node_id"] >= max(nodes)


def test_workflow_ids_are_distinct() -> None:
    ids = [load(p)["id"] for p in WORKFLOWS]
    assert len(set(ids)) == len(ids), ids


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_a_checkpoint_loader_names_its_download(workflow: Path) -> None:
    """The front end lists a missing checkpoint with its download address when the node's
    properties.models has an entry named like the selected file."""
    for node in load(workflow)["nodes"]:
        if node["type"] != "CheckpointLoaderSimple":
            continue
        models = node.get("properties", {}).get("models") or []
        (entry,) = [m for m in models if m.get("name") == node["widgets_values"][0]]
        assert entry["directory"] == "checkpoints" and entry["url"].startswith("https://"), entry


def test_only_workflows_is_a_template_folder() -> None:
    """ComfyUI 0.3.75 serves the first of its template folder names that exists: a pack folder named
    examples/ (the example photos once were) hides workflows/ from the Templates dialog."""
    present = [name for name in TEMPLATE_FOLDERS if (REPO / name).is_dir()]
    assert present == ["workflows"], present
