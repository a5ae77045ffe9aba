"""docs/compatibility.md names every ComfyUI name the pack's code uses (read from the source)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "compatibility.md"
# module alias in the pack's code -> how the doc names it
MODULES = {"io": "io.", "ui": "ui.", "model_management": "", "folder_paths": "", "utils": "",
           "model_patcher": ""}


def comfy_names() -> dict[str, set[str]]:
    """``{alias: {attribute, ...}}`` for attribute uses of ComfyUI modules in __init__.py and nodes/."""
    found: dict[str, set[str]] = {}
    for path in [REPO / "__init__.py", *sorted((REPO / "nodes").glob("*.py"))]:
        tree = ast.parse(path.read_text(), str(path))
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in ("comfy_api.latest", "comfy"):
                for a in node.names:
                    aliases[a.asname or a.name] = a.name
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith(("comfy.", "folder_paths")):
                        aliases[a.asname or a.name] = a.name.split(".")[-1]
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                base = node.value
                if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id == "comfy":
                    found.setdefault(base.attr, set()).add(node.attr)
                elif isinstance(base, ast.Name) and base.id in aliases and aliases[base.id] in MODULES:
                    found.setdefault(aliases[base.id], set()).add(node.attr)
    return found


def test_every_comfyui_name_used_is_in_the_compatibility_table() -> None:
    names = comfy_names()
    assert {"io", "model_management", "folder_paths"} <= set(names), names  # the scan sees the code
    text = DOC.read_text()
    cells = set(re.findall(r"`([^`]+)`", text))
    missing = []
    for module, attrs in names.items():
        for attr in attrs:
            if not any(re.search(rf"(^|[\s.(]){re.escape(attr)}\b", cell) for cell in cells):
                missing.append(f"{module}.{attr}")
    assert not missing, f"not in docs/compatibility.md: {sorted(missing)}"
    assert "0.3.75" in text and re.search(r"ComfyUI 0\.\d\d\.\d", text)
