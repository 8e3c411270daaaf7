"""Shared fixtures: a tiny, hand-made screen folder (independent of the simulator)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from morphoflow.runtime import configure_process

# the test session is an entry point: telemetry off, fixed mmap threshold (as for the CLI)
configure_process()

import torch  # noqa: E402

from morphoflow.screen.constants import CHANNELS  # noqa: E402

# One intra-op thread: the suite's many small forward passes run faster on a loaded 2-core
# machine without thread oversubscription (measured: 8-10 s vs 34-136 s for the segmentation tests).
torch.set_num_threads(1)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _textured_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A small uint16 image with blobs (so focus/saturation statistics are sensible)."""
    yy, xx = np.mgrid[:size, :size]
    image = rng.normal(400, 20, (size, size))
    for _ in range(4):
        cy, cx = rng.uniform(4, size - 4, 2)
        image += 1500 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2))
    return np.clip(image, 0, 65535).astype(np.uint16)


def write_tiny_screen(
    root: Path,
    plates: tuple[str, ...] = ("P1", "P2"),
    wells: tuple[tuple[str, str, str], ...] = (
        ("A01", "DMSO", "negcon"),
        ("A02", "cpd_a", ""),
        ("B01", "cpd_b", ""),
    ),
    sites: int = 1,
    size: int = 32,
    seed: int = 0,
) -> Path:
    """Write a minimal valid screen: load_data.csv, platemap.csv, moa.csv and TIFF files."""
    rng = np.random.default_rng(seed)
    load_rows, map_rows = [], []
    for plate in plates:
        folder = root / "images" / plate
        folder.mkdir(parents=True, exist_ok=True)
        for well, treatment, control in wells:
            map_rows.append(
                {
                    "Metadata_Plate": plate,
                    "Metadata_Well": well,
                    "Metadata_Treatment": treatment,
                    "Metadata_ControlType": control,
                }
            )
            for site in range(1, sites + 1):
                row = {
                    "Metadata_Source": "src1",
                    "Metadata_Plate": plate,
                    "Metadata_Well": well,
                    "Metadata_Site": site,
                }
                for channel in CHANNELS:
                    name = f"{plate}_{well}_s{site}_{channel}.tif"
                    tifffile.imwrite(folder / name, _textured_image(rng, size), compression="zlib")
                    row[f"FileName_Orig{channel}"] = name
                    row[f"PathName_Orig{channel}"] = f"images/{plate}"
                load_rows.append(row)
    pd.DataFrame(load_rows).to_csv(root / "load_data.csv", index=False)
    pd.DataFrame(map_rows).to_csv(root / "platemap.csv", index=False)
    pd.DataFrame(
        {"Metadata_Treatment": ["DMSO", "cpd_a", "cpd_b"], "Metadata_MoA": ["", "moa_x", "moa_x"]}
    ).to_csv(root / "moa.csv", index=False)
    return root


@pytest.fixture
def tiny_screen(tmp_path: Path) -> Path:
    """A valid tiny screen in a fresh folder."""
    return write_tiny_screen(tmp_path / "screen")


@pytest.fixture
def edit_csv() -> Callable[[Path, Callable[[pd.DataFrame], pd.DataFrame]], None]:
    """Rewrite a CSV through a function of its DataFrame (all columns read as text)."""

    def _edit(path: Path, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        change(frame).to_csv(path, index=False)

    return _edit


@pytest.fixture(scope="session")
def real_nuclei_dir() -> Path:
    """The shared real nucleus images: ``$MORPHOFLOW_SHARED_DATA/real_nuclei``, by default
    ``<repository>/../shared/data/real_nuclei`` (read-only: never write beside it).

    When the folder is absent the test fails under ``CI=true`` and is skipped elsewhere, with
    the reason. (Benchmarks follow the same rule through ``benchmarks/_shared_data.py``.)
    """
    override = os.environ.get("MORPHOFLOW_SHARED_DATA")
    root = Path(override) if override else PROJECT_ROOT.parent / "shared" / "data"
    folder = root / "real_nuclei"
    if not folder.is_dir():
        reason = (
            f"real nucleus images not found at {folder}; set MORPHOFLOW_SHARED_DATA to the "
            "folder that holds real_nuclei/"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return folder
