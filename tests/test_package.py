"""Process settings of the entry points: telemetry off, allocator setting that keeps streaming
memory flat; importing the package changes nothing."""

from __future__ import annotations

import os
import sys

import pytest

from morphoflow import runtime


def test_importing_morphoflow_changes_nothing_and_entry_points_turn_telemetry_off() -> None:
    import subprocess

    code = (
        "import os, morphoflow, morphoflow.cli, morphoflow.profiling.workflow\n"
        f"print(sorted(k for k in {sorted(runtime.TELEMETRY_OFF)!r} if k in os.environ))\n"
        "from morphoflow.runtime import configure_process\n"
        "configure_process()\n"
        "print(os.environ['KEDRO_DISABLE_TELEMETRY'], os.environ['GX_ANALYTICS_ENABLED'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in runtime.TELEMETRY_OFF}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split("\n")[:2] == ["[]", "true false"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_glibc_mmap_threshold_is_fixed() -> None:
    # regression: without it, segmenting the 1,800-site benchmark screen peaked at 13 GB RSS
    assert runtime.fixed_mmap_threshold() is True
