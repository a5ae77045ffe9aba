"""Shared pytest fixtures: one real ComfyUI host per test session."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
for _p in (str(TESTS_DIR), str(REPO)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from comfy_client import ComfyHost  # noqa: E402


@pytest.fixture(scope="session")
def comfy_host() -> Iterator[ComfyHost]:
    """A running ComfyUI 0.3.75 server with the repo linked as custom_nodes/m3unet_pack.

    Started once per session and stopped at the end. If it cannot start (within 180 s, or
    M3UNET_HOST_STARTUP_TIMEOUT seconds on a busy machine), every test using it fails with the
    server log tail (never skipped). The per-run base directory is removed
    at the end unless M3UNET_KEEP_HOST_DIR=1.
    """
    host = ComfyHost()
    error: str | None = None
    try:
        host.start(REPO, startup_timeout=float(os.environ.get("M3UNET_HOST_STARTUP_TIMEOUT", "180")))
    except Exception as exc:  # noqa: BLE001 - report any start failure as a test failure
        error = f"ComfyUI host failed to start: {exc}"
    if error is not None:
        host.stop(remove_base_dir=os.environ.get("M3UNET_KEEP_HOST_DIR") != "1")  # leave no temp dir behind
        pytest.fail(error, pytrace=False)
    try:
        yield host
    finally:
        host.stop(remove_base_dir=os.environ.get("M3UNET_KEEP_HOST_DIR") != "1")


@pytest.fixture(scope="session")
def comfy_object_info(comfy_host: ComfyHost) -> dict[str, Any]:
    """``/object_info`` of the session host (fetched once)."""
    return comfy_host.object_info()


CATEGORIES = {"unit", "cli", "host", "slow", "browser"}


def pytest_collection_modifyitems(config, items) -> None:
    """A test with no category marker is a unit test (``-m unit`` selects the fast in-process ones)."""
    for item in items:
        if not {m.name for m in item.iter_markers()} & CATEGORIES:
            item.add_marker(pytest.mark.unit)
