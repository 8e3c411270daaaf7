"""profile_sites with the classical extractor: whole cells in the site, feature set recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from morphoflow.profiling.cells import segment_cells
from morphoflow.profiling.classical import (
    FEATURE_SET_COLUMN,
    classical_extractor,
    feature_set_id,
    site_features,
)
from morphoflow.profiling.extract import CropSettings, profile_sites
from morphoflow.screen.io import read_site
from morphoflow.screen.table import load_screen
from morphoflow.segmentation.segmenter import nuclei_table
from tests.pipelines.conftest import simulate_tiny_screen

KEYS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]


def test_profile_sites_measures_whole_cells_and_records_the_feature_set(tmp_path: Path) -> None:
    root = simulate_tiny_screen(tmp_path / "screen", plates_per_source=1, n_sources=1)
    table = load_screen(root).head(2)
    frames = []
    for _, site in table.iterrows():
        labels = tifffile.imread(root / site["Path_NucleiTruth"]).astype(np.int64)
        nuclei = nuclei_table(labels)
        for key in ["Metadata_Source", *KEYS]:
            nuclei[key] = site[key]
        nuclei["Path_NucleiLabels"] = site["Path_NucleiTruth"]
        frames.append(nuclei)
    nuclei = pd.concat(frames, ignore_index=True)

    # 16-px crops: every cell is larger than its crop, so a crop-based Area would be <= 256
    sites, _ = profile_sites(
        table,
        nuclei,
        root=root,
        labels_dir=root,
        extractor=classical_extractor("default"),
        single_cell_dir=tmp_path / "single_cell",
        crop=CropSettings(size=16),
    )
    cells = pd.read_parquet(tmp_path / "single_cell")
    assert (cells[FEATURE_SET_COLUMN] == feature_set_id("default")).all()
    assert (sites[FEATURE_SET_COLUMN] == feature_set_id("default")).all()
    assert cells["Metadata_CropCutsCell"].all()
    assert (cells["Cells_AreaShape_Area"] > 16 * 16).any()

    # the single-cell rows are the site measurement of the whole objects
    first = table.iloc[0]
    image = read_site(first.to_dict(), root=root)
    labels = tifffile.imread(root / first["Path_NucleiTruth"]).astype(np.int32)
    grown = segment_cells(image.astype(np.float32), labels)
    rows = cells[(cells[KEYS] == first[KEYS]).all(axis=1)]
    expected = site_features(
        image.astype(np.float32), labels, grown, rows["Metadata_ObjectNumber"].to_numpy()
    )
    features = list(expected.columns)
    np.testing.assert_allclose(
        rows[features].to_numpy(), expected.to_numpy(), rtol=1e-9, equal_nan=True
    )
