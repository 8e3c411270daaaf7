"""profiling (stored crops) -> representation_comparison, through `kedro run`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from morphoflow.learning.comparison import CORRECTIONS, TABLE_COLUMNS
from tests.pipelines.conftest import simulate_tiny_screen

VARIANTS = (
    "wsl_one_source_leave_cells_out",
    "wsl_one_source_leave_plates_out",
    "wsl_combined_leave_cells_out",
    "wsl_combined_leave_plates_out",
)


@pytest.fixture(scope="module")
def three_source_screen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 sources x 2 plates of 128 px sites, 4 treatments per MoA (so both halves query)."""
    out = tmp_path_factory.mktemp("sim3") / "screen"
    return simulate_tiny_screen(out, seed=5, n_sources=3, n_dmso_wells=3)


@pytest.mark.slow
def test_representation_comparison_writes_the_table_and_figure(
    kedro_project: Path, run_pipeline, three_source_screen: Path
) -> None:
    run_pipeline(
        "profiling,representation_comparison",
        {
            "screen.root": three_source_screen,
            "crops.store": "true",
            "crops.size": 64,
            "batch_correction.null_size": 100,
            "batch_correction.shuffles": 3,
            "training.config.batch_size": 8,
            "representation_comparison.wsl.epochs": 1,
        },
    )
    folder = kedro_project / "data/08_reporting/representation_comparison"
    table = pd.read_csv(
        folder / "representation_comparison.csv", keep_default_na=False, na_values=[""]
    )
    assert list(table.columns) == list(TABLE_COLUMNS)
    names = ("classical", "imagenet", *VARIANTS)
    assert table[["representation", "correction"]].values.tolist() == [
        [n, c] for n in names for c in CORRECTIONS
    ]
    # no local ImageNet weights: reported as skipped, with the reason, never estimated
    imagenet = table[table["representation"] == "imagenet"]
    assert (imagenet["status"] == "skipped").all()
    assert imagenet["reason"].str.contains("weights_path is null").all()
    assert imagenet["map"].isna().all()
    ok = table[table["status"] == "ok"]
    assert len(ok) == 3 * (1 + len(VARIANTS))
    scores = ["map", "folds_of_enrichment", "shuffled_map", "interpolated_map", "lambda"]
    assert np.isfinite(ok[scores].to_numpy(float)).all()
    assert ((ok["map"] > 0) & (ok["map"] <= 1)).all()
    wsl = ok[ok["kind"] == "wsl"]
    assert (wsl["epochs"] == 1).all() and (wsl["n_features"] <= 672).all()
    assert set(wsl["training_sources"]) == {"source_1", "source_1+source_2"}
    assert set(wsl["split"]) == {"leave_cells_out", "leave_plates_out"}
    assert (folder / "representation_comparison.png").stat().st_size > 0

    report = json.loads((folder / "report.json").read_text())
    assert report["holdout"] == {"sources": ["source_3"], "plates": []}
    assert set(report["skipped"]) == {"imagenet"}
    training = json.loads(
        (kedro_project / "data/06_models/representation_comparison/training.json").read_text()
    )
    assert set(training["variants"]) == set(VARIANTS)
    for info in training["variants"].values():
        assert Path(info["model_path"]).is_file()
        assert "source_3" not in info["sources"]
