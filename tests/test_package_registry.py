"""The registry package: what ``comfy node pack`` puts into the zip users download.

comfy-cli (``comfy node pack``) zips the git-tracked files minus the patterns of ``.comfyignore``
(gitwildmatch, read with ``pathspec`` as comfy-cli does) plus ``[tool.comfy] includes``.
``build_zip`` does the same, so the check runs without comfy-cli in CI; with ``M3UNET_COMFY_CLI``
naming a comfy executable, its own zip is built too and must hold the same files. The zip must
hold what a user needs (nodes, runtime library, weights, workflows, web files, examples, icon)
and nothing of development (tests, scripts, docs, results, training logs, training and
evaluation code), stay within its size budget, and load in a real ComfyUI on its own.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
import zipfile
from pathlib import Path

import pytest
from PIL import Image

# comfy-cli reads .comfyignore with pathspec's "gitwildmatch", which newer pathspec releases deprecate
pytestmark = pytest.mark.filterwarnings("ignore:GitWildMatchPattern:DeprecationWarning")

REPO = Path(__file__).resolve().parent.parent
NODE_IDS = {"M3UNetLoader", "M3UNetRefineEncoder", "M3UNetPixelControl", "M3UNetSampler", "M3UNetMLLMLoader",
            "M3UNetMLLMCaption", "M3UNetAutoRestore", "M3UNetKernelDeblur", "M3UNetMotionDeblur", "M3UNetDegradationClassifier"}
# What must never be in the package (development, training, evaluation, CI, local state).
FORBIDDEN = re.compile(r"^(tests|scripts|docs|results|data|checkpoints|logs|out|\.host|\.ci|m3unet/training|"
                       r"m3unet/evaluation)/|\.train-log\.jsonl$|\.log$|^requirements-dev\.txt$")
# Everything else beyond the weights must stay small.
NON_WEIGHT_BUDGET = 3_000_000  # bytes, uncompressed
ZIP_BUDGET = 60_000_000  # bytes: the shipped weights (about 55 MB) and the rest


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def ignore_spec():
    """.comfyignore as comfy-cli reads it (gitwildmatch patterns, comments and blank lines dropped)."""
    import pathspec

    lines = [line.strip() for line in (REPO / ".comfyignore").read_text().splitlines()]
    return pathspec.PathSpec.from_lines("gitwildmatch", [ln for ln in lines if ln and not ln.startswith("#")])


def tracked_files() -> list[str]:
    """The git-tracked files; in a copy without git, every file of the folder (as comfy-cli falls back),
    leaving out ignored folders while walking."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files"], check=True, capture_output=True, text=True).stdout
        files = [line for line in out.splitlines() if line.strip()]
    except (OSError, subprocess.CalledProcessError):
        files = []
    if files:
        return files
    spec = ignore_spec()
    found = []
    for root, dirs, names in os.walk(REPO):
        rel_root = Path(root).relative_to(REPO)
        dirs[:] = [d for d in dirs if d != ".git" and not spec.match_file(f"{(rel_root / d).as_posix()}/")]
        found += [(rel_root / n).as_posix() for n in names]
    return found


def build_zip(target: Path) -> list[str]:
    """Zip the pack the way ``comfy node pack`` does (git-tracked files, .comfyignore, includes)."""
    spec = ignore_spec()
    includes = [str(Path(i.lstrip("/"))) for i in pyproject()["tool"]["comfy"].get("includes", [])]
    names = []
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in tracked_files():
            forced = any(rel == i or rel.startswith(i + "/") for i in includes)
            if (spec.match_file(rel) and not forced) or not (REPO / rel).exists():
                continue
            zf.write(REPO / rel, rel)
            names.append(rel)
    return names


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    target = tmp_path_factory.mktemp("package") / "node.zip"
    return target, build_zip(target)


@pytest.mark.unit
def test_package_holds_what_a_user_needs_and_nothing_of_development(package) -> None:
    target, names = package
    forbidden = [n for n in names if FORBIDDEN.search(n)]
    assert not forbidden, forbidden
    tracked = set(tracked_files())
    assert any(FORBIDDEN.search(n) for n in tracked), "the repository has development files: the check is live"
    needed = {"__init__.py", "pyproject.toml", "LICENSE", "README.md", "requirements.txt", "assets/icon.png",
              "assets/examples/coffee_degraded.png", "web/js/m3unet_seeds.js"}
    needed |= {n for n in tracked if n.startswith(("nodes/", "workflows/", "web/docs/")) or
               re.match(r"m3unet/(core|restore|caption|auto|cli)/", n) or re.match(r"m3unet/[^/]+\.py$", n) or
               re.match(r"weights/[^/]+\.(safetensors|md)$", n)}
    assert needed <= set(names), sorted(needed - set(names))
    assert {f"web/docs/{i}.md" for i in NODE_IDS} <= set(names)
    for workflow in (REPO / "workflows").glob("*.json"):
        assert f"workflows/{workflow.stem}.jpg" in names, workflow.stem  # its Templates thumbnail


@pytest.mark.unit
def test_package_size_budget(package) -> None:
    target, names = package
    sizes = {n: (REPO / n).stat().st_size for n in names}
    rest = {n: s for n, s in sizes.items() if not n.endswith(".safetensors")}
    assert sum(rest.values()) < NON_WEIGHT_BUDGET, sorted(rest.items(), key=lambda kv: -kv[1])[:10]
    assert target.stat().st_size < ZIP_BUDGET, target.stat().st_size
    print(f"\nregistry zip: {len(names)} files, {target.stat().st_size / 1e6:.1f} MB "
          f"({sum(rest.values()) / 1e6:.2f} MB besides the weights)")


@pytest.mark.unit
def test_registry_metadata_icon_and_comfyui_version() -> None:
    comfy = pyproject()["tool"]["comfy"]
    repo_url = pyproject()["project"]["urls"]["Repository"].rstrip("/")
    owner_repo = repo_url.split("github.com/")[1]
    icon_prefix = f"https://raw.githubusercontent.com/{owner_repo}/main/"
    assert comfy["Icon"].startswith(icon_prefix), comfy["Icon"]
    icon = REPO / comfy["Icon"][len(icon_prefix):]
    with Image.open(icon) as img:
        assert img.format == "PNG" and img.size[0] == img.size[1] <= 400, (img.format, img.size)
    assert icon.stat().st_size < 100_000
    # comfy-cli's pattern for requires-comfyui ([operator]major.minor.patch, comma-separated)
    part = re.compile(r"^(?:(==|>=|<=|!=|~=|>|<|<>|=)\s*)?(\d+\.\d+\.\d+(?:-[a-zA-Z0-9]+)?)?$")
    assert comfy["requires-comfyui"] and all(part.match(p.strip()) for p in comfy["requires-comfyui"].split(","))
    assert "0.3.75" in comfy["requires-comfyui"]


@pytest.mark.unit
def test_comfy_cli_builds_the_same_zip(package, tmp_path: Path) -> None:
    """With M3UNET_COMFY_CLI (a comfy executable, e.g. from a throwaway venv: pip install comfy-cli),
    ``comfy node pack`` in a clean clone holds exactly the files build_zip chose. Without it, the
    ignore rules are checked against a hand-written expectation instead."""
    _, names = package
    comfy = os.environ.get("M3UNET_COMFY_CLI")
    if comfy:
        clone = tmp_path / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        for rel in (".comfyignore",):  # the working tree's rules, even before they are committed
            shutil.copy(REPO / rel, clone / rel)
        subprocess.run([comfy, "--skip-prompt", "--no-enable-telemetry", "node", "pack"], cwd=clone, check=True,
                       capture_output=True, timeout=600)
        with zipfile.ZipFile(clone / "node.zip") as zf:
            theirs = {n for n in zf.namelist() if not n.endswith("/")}
        committed = {n for n in names if n in set(subprocess.run(
            ["git", "-C", str(clone), "ls-files"], check=True, capture_output=True, text=True).stdout.split())}
        assert theirs == committed, (sorted(theirs - committed), sorted(committed - theirs))
    else:
        spec = ignore_spec()
        for ignored in ("tests/test_cli.py", "docs/field.md", "weights/m3unet-default.train-log.jsonl",
                        "m3unet/training/train.py", "m3unet/evaluation/bench.py", "results/x.json", ".ci/run",
                        ".venv/bin/python", "nodes/__pycache__/common.cpython-311.pyc"):
            assert spec.match_file(ignored), ignored
        for kept in ("nodes/sampler.py", "m3unet/auto/plan.py", "m3unet/cli/main.py", "weights/m3unet-default.md",
                     "weights/m3unet-default.safetensors", "workflows/m3unet_auto_restore.jpg", "web/docs/M3UNetSampler.md"):
            assert not spec.match_file(kept), kept


@pytest.mark.host
@pytest.mark.slow
def test_the_package_alone_loads_and_restores_in_comfyui(package, tmp_path: Path) -> None:
    """The zip's content, unpacked as a user's custom_nodes folder, loads in ComfyUI 0.3.75 (all nodes,
    help pages served) and restores an image; its command line works without the development code."""
    import numpy as np

    from comfy_client import ComfyHost

    target, _ = package
    unpacked = tmp_path / "m3unet-restore"
    with zipfile.ZipFile(target) as zf:
        zf.extractall(unpacked)
    cli = subprocess.run([sys.executable, "-m", "m3unet", "restore", "--help"], cwd=unpacked, capture_output=True,
                         text=True, timeout=120)
    assert cli.returncode == 0 and "--mode" in cli.stdout, cli.stderr
    host = ComfyHost()
    try:
        try:
            host.start(REPO, pack_target=unpacked,
                       startup_timeout=float(os.environ.get("M3UNET_HOST_STARTUP_TIMEOUT", "180")))
        except Exception as exc:  # noqa: BLE001 - fail, never skip
            pytest.fail(f"ComfyUI host failed to start with the packaged pack: {exc}", pytrace=False)
        info = host.object_info()
        assert NODE_IDS <= set(info), sorted(NODE_IDS - set(info))
        r = host.session.get(f"{host.url}/extensions/m3unet_pack/docs/M3UNetSampler.md", timeout=30)
        assert r.status_code == 200
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(
            host.input_dir / "pkg.png")
        entry = host.run({
            "1": {"class_type": "LoadImage", "inputs": {"image": "pkg.png"}},
            "2": {"class_type": "M3UNetLoader", "inputs": {"model_name": "m3unet-default.safetensors"}},
            "3": {"class_type": "M3UNetAutoRestore", "inputs": {"model": ["2", 0], "image": ["1", 0], "budget": 1,
                                                                 "seed": 0, "keep_larger": False, "plan": ""}},
            "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0],
                                                        "filename_prefix": f"pkg/{uuid.uuid4().hex[:6]}"}}},
            timeout=600)
        assert entry["status"]["status_str"] == "success", host.execution_error(entry)
        failed = [ln for ln in host.log_text().splitlines() if "IMPORT FAILED" in ln and "m3unet" in ln]
        assert not failed, failed
    finally:
        host.stop(remove_base_dir=True)
