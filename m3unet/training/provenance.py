"""Provenance recorded next to trained weights (the model card): the commit that trained them."""
from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit() -> str:
    """The repository's HEAD commit, or ``"unknown"`` outside a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except Exception:  # noqa: BLE001 - no git, not a checkout: provenance is simply unknown
        return "unknown"
