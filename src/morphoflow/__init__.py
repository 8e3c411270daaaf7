"""morphoflow: image-based profiling and nucleus segmentation as a managed model lifecycle."""

from __future__ import annotations

import os

__version__ = "0.1.0"

# Telemetry off in every entry point (kedro, Great Expectations, generic trackers).
for _key, _value in (
    ("KEDRO_DISABLE_TELEMETRY", "true"),
    ("DO_NOT_TRACK", "1"),
    ("GX_ANALYTICS_ENABLED", "false"),
    ("MLFLOW_ENABLE_ASYNC_LOGGING", "false"),
):
    os.environ.setdefault(_key, _value)
