"""morphoflow: image-based profiling and nucleus segmentation as a managed model lifecycle.

Importing morphoflow has no side effect; entry points call
:func:`morphoflow.runtime.configure_process` (telemetry off, allocator setting).
"""

from __future__ import annotations

__version__ = "0.1.0"
