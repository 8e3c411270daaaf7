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


def test_unknown_runtime_parameters_are_named_with_the_closest_known_one() -> None:
    from morphoflow.hooks import unknown_parameters

    known = {
        "screen": {"root": "data/01_raw/demo_screen"},
        "wells": {"min_cells_per_well": 10},
        "segmentation": {"maskrcnn": {"config": {}}},
    }
    runtime = {
        "screen": {"rot": "/x"},
        "wells.min_cell_per_well": 100,
        "segmentation.maskrcnn.config.anchor_sizes": [8],  # free-form block: any key
        "nonsense": 1,
    }
    assert unknown_parameters(runtime, known) == [
        "screen.rot (did you mean screen.root?)",
        "wells.min_cell_per_well (did you mean wells.min_cells_per_well?)",
        "nonsense",
    ]
    assert unknown_parameters({"screen.root": "/x", "wells.min_cells_per_well": 2}, known) == []
