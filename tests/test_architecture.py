"""The library's layering, read from the source: imports go only downward and never in a circle.

Layers, lowest first: ``core`` (model, text encoder, weights, image helpers) -> ``restore`` (the
Restorer pipeline) and ``caption`` (MLLM text prior) -> ``auto`` (classifier, plan, pool, policy,
automatic restorer) -> ``training`` -> ``evaluation`` -> ``cli``. Runtime layers (core, restore,
caption, auto) never import training, evaluation or the command line. The ComfyUI nodes use only
the runtime layers' public API (the packages' ``__init__``), never a module inside them.
Every import counts, including those made inside functions.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
LIB = REPO / "m3unet"
RANK = {"core": 0, "restore": 1, "caption": 1, "auto": 2, "training": 3, "evaluation": 4, "cli": 5}
RUNTIME = {"core", "restore", "caption", "auto"}


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """``(line, absolute module)`` for every project import in ``path`` (relative ones resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    base = package.split(".")
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level]
                mod = ".".join(anchor + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [f"{mod}.{a.name}" for a in node.names]
            found += [(node.lineno, mod)] + [(node.lineno, n) for n in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return found


def library_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (only names that are modules of the library).

    ``from . import guards`` imports the submodule, not the package's ``__init__``: when every
    imported name is a module, only those count."""
    modules = {module_name(p): p for p in LIB.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        anchor = name + ".x" if path.name == "__init__.py" else name
        tree = ast.parse(path.read_text(), str(path))
        found: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = _resolve(node, anchor)
                subs = [f"{base}.{a.name}" for a in node.names]
                found += [s for s in subs if s in modules] if all(s in modules for s in subs) else [base] + subs
            elif isinstance(node, ast.Import):
                found += [a.name for a in node.names]
        deps = set()
        for mod in found:
            while mod and mod not in modules:
                mod = mod.rsplit(".", 1)[0] if "." in mod else ""
            if mod and mod != name:
                deps.add(mod)
        graph[name] = deps
    return graph


def _resolve(node: ast.ImportFrom, module: str) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")[: len(module.split(".")) - node.level]
    return ".".join(base + ([node.module] if node.module else []))


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def wrong_way_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in graph.items():
        src = layer(mod)
        for dep in deps:
            dst = layer(dep)
            if src is None or dst is None or src == dst:
                continue
            if RANK[dst] >= RANK[src]:
                bad.append(f"{mod} (layer {src}) imports {dep} (layer {dst})")
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_library_has_layer_folders_and_no_flat_modules():
    flat = sorted(p.name for p in LIB.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert flat == [], f"modules outside the layer folders: {flat}"
    assert {p.name for p in LIB.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(RANK)


def test_imports_only_go_down():
    assert wrong_way_imports(library_graph()) == []


def test_runtime_layers_never_import_training_or_evaluation():
    graph = library_graph()
    bad = [f"{m} -> {d}" for m, deps in graph.items() if layer(m) in RUNTIME
           for d in deps if layer(d) in {"training", "evaluation", "cli"}]
    assert bad == []


def test_no_import_cycles():
    assert cycles(library_graph()) == []


def node_imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of each library import in a node module (package ``m3unet_pack``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:
            anchor = ["m3unet_pack", "nodes", path.stem][: 3 - node.level]
            mod = ".".join(anchor + ([node.module] if node.module else []))
            if mod.startswith("m3unet_pack.m3unet"):
                out.append((node.lineno, mod, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.startswith("m3unet")]
    return out


def test_nodes_use_only_the_public_api():
    public = {"m3unet_pack.m3unet"} | {f"m3unet_pack.m3unet.{p}" for p in RUNTIME}
    bad = []
    for path in sorted((REPO / "nodes").glob("*.py")):
        for line, mod, names in node_imports(path):
            inner = [n for n in names if f"{mod}.{n}" in _submodules()]
            if mod not in public or inner or mod == "m3unet_pack.m3unet" and set(names) - RUNTIME - {"__version__"}:
                bad.append(f"{path.name}:{line} imports {mod} {names}")
    assert bad == [], "nodes must import from m3unet's runtime layer packages, not their modules:\n" + "\n".join(bad)


def _submodules() -> set[str]:
    return {"m3unet_pack." + module_name(p) for p in LIB.rglob("*.py") if p.name != "__init__.py"}


# The checker itself: a wrong-way import and a cycle written into a fake graph are found.
def test_checker_finds_a_wrong_way_import_and_a_cycle():
    graph = {"m3unet.core.a": {"m3unet.training.b"}, "m3unet.training.b": {"m3unet.training.c"},
             "m3unet.training.c": {"m3unet.training.b"}}
    assert wrong_way_imports(graph) == ["m3unet.core.a (layer core) imports m3unet.training.b (layer training)"]
    assert cycles(graph) == [["m3unet.training.b", "m3unet.training.c"]]


def test_checker_reads_imports_inside_functions(tmp_path):
    f = tmp_path / "mod.py"
    f.write_text("def f():\n    from ..training.train import x\n    return x\n")
    assert (2, "m3unet.training.train") in imported_modules(f, "m3unet.core.mod")


def test_the_label_list_is_spelled_once():
    """The classifier's outputs, the plan's tasks and the policy's labels are one tuple from the
    domain layer, covering every label a degradation kind is reported under."""
    from m3unet.auto import classifier, plan, policy
    from m3unet.core import degradations
    assert classifier.LABELS is plan.TASKS is policy.LABELS is degradations.LABELS
    assert set(degradations.LABELS) == set(degradations.LABEL.values())
    assert len(set(degradations.LABELS)) == len(degradations.LABELS)
