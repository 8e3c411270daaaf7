"""Where benchmarks find the shared real-image data (never shipped, never written to).

``MORPHOFLOW_SHARED_DATA`` names the folder that holds ``real_nuclei/``; by default it is
``<repository>/../shared/data``. Tests use the ``real_nuclei_dir`` fixture of
``tests/conftest.py``, which follows the same rule.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The shared data folder: ``$MORPHOFLOW_SHARED_DATA`` or ``<repo>/../shared/data``."""
    override = os.environ.get("MORPHOFLOW_SHARED_DATA")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "data"


def real_nuclei_dir() -> Path:
    """``<shared data>/real_nuclei`` (read-only).

    Raises:
        FileNotFoundError: The folder does not exist (the message says where it was looked for
            and how to point at it).
    """
    folder = shared_data_dir() / "real_nuclei"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"real nucleus images not found at {folder}; set MORPHOFLOW_SHARED_DATA to the "
            "folder that holds real_nuclei/"
        )
    return folder
