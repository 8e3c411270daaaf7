"""The import graph follows DESIGN.md's layers (import-linter contracts in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT_ROOT


def test_layers_and_forbidden_imports_hold() -> None:
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert command, "lint-imports (import-linter, a dev dependency) is not installed"
    result = subprocess.run(
        [command, "--config", str(PROJECT_ROOT / "pyproject.toml"), "--no-cache"],
        cwd=PROJECT_ROOT / "src",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
