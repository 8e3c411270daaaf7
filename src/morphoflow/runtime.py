"""Process settings that morphoflow's entry points apply (never done at import time).

Entry points (the ``morphoflow`` CLI, ``kedro run`` through the project's ``settings.py``,
``python -m morphoflow``, the benchmarks and the test session) call :func:`configure_process`
first thing. Importing any morphoflow module changes nothing in the process.
"""

from __future__ import annotations

import os
import sys

#: Environment defaults that turn telemetry off (kedro, Great Expectations, generic trackers)
#: and keep MLflow logging synchronous (a failed log call raises where it happens).
TELEMETRY_OFF: dict[str, str] = {
    "KEDRO_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
}

#: Allocations at or above this many bytes are served by mmap (see :func:`fixed_mmap_threshold`).
MMAP_THRESHOLD = 128 * 1024


def fixed_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Make glibc serve every allocation >= ``threshold`` bytes with mmap (returned on free).

    glibc raises its mmap threshold each time a large block is freed, after which per-site
    image arrays (~0.3-2 MB) come from the heap and small long-lived objects pin it: measured
    here, segmenting 200 sites grew RSS by ~6 MB per site (13 GB on the 1,800-site benchmark
    screen). A fixed threshold (what ``MALLOC_MMAP_THRESHOLD_`` does) keeps memory flat.

    Args:
        threshold: Bytes.

    Returns:
        True when set; False where the C library is not glibc (nothing to do there).
    """
    import ctypes

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_mmap_threshold = -3
    return bool(libc.mallopt(m_mmap_threshold, int(threshold)))


def configure_process() -> None:
    """Telemetry off (environment defaults; explicit settings win) and a fixed mmap threshold."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
    fixed_mmap_threshold()
