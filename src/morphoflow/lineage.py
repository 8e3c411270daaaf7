"""Lineage facts shared by the Kedro hooks and the model lifecycle (no kedro/mlflow import)."""

from __future__ import annotations

import subprocess
from pathlib import Path

#: The folder of the installed package: its git revision is the code that runs.
PACKAGE_DIR = Path(__file__).resolve().parent


def git_revision(path: str | Path = ".") -> str:
    """The git commit of ``path`` (``+dirty`` when the tree has changes), or ``unknown``."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")
