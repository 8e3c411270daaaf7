"""profile_sites: site medians through the tested SiteMedianAccumulator; every site keeps a row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from morphoflow.profiling.classical import classical_features
from morphoflow.profiling.extract import profile_sites
from morphoflow.screen.table import load_screen
from morphoflow.segmentation.segmenter import nuclei_table
from tests.pipelines.conftest import simulate_tiny_screen

KEYS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]


def test_site_medians_equal_the_single_cell_medians_and_an_empty_site_keeps_a_row(
    tmp_path: Path,
) -> None:
    root = simulate_tiny_screen(tmp_path / "screen", plates_per_source=1, n_sources=1)
    table = load_screen(root).head(4)
    frames = []
    for _, site in table.iterrows():
        labels = tifffile.imread(root / site["Path_NucleiTruth"]).astype(np.int64)
        nuclei = nuclei_table(labels)
        for key in ["Metadata_Source", *KEYS]:
            nuclei[key] = site[key]
        nuclei["Path_NucleiLabels"] = site["Path_NucleiTruth"]
        frames.append(nuclei)
    nuclei = pd.concat(frames, ignore_index=True)
    empty = tuple(table.iloc[1][KEYS])
    nuclei = nuclei[~(nuclei[KEYS] == pd.Series(empty, index=KEYS)).all(axis=1)]

    sites, index = profile_sites(
        table,
        nuclei,
        root=root,
        labels_dir=root,
        extractor=classical_features,
        single_cell_dir=tmp_path / "single_cell",
    )
    assert len(sites) == len(table)  # the site without nuclei is there, with count 0
    row = sites[(sites[KEYS] == pd.Series(empty, index=KEYS)).all(axis=1)].iloc[0]
    assert row["Metadata_CellCount"] == 0
    features = [c for c in sites.columns if not c.startswith("Metadata_")]
    assert row[features].isna().all()

    cells = pd.read_parquet(tmp_path / "single_cell")
    medians = cells.groupby(KEYS)[features].median()
    profiled = sites[sites["Metadata_CellCount"] > 0].set_index(KEYS)[features]
    pd.testing.assert_frame_equal(
        profiled.sort_index(), medians.sort_index(), check_dtype=False, rtol=1e-12
    )
    counts = cells.groupby(KEYS).size()
    assert (
        profiled.index.map(counts)
        == sites.set_index(KEYS).loc[profiled.index, "Metadata_CellCount"]
    ).all()
    assert len(index) == len(cells)
