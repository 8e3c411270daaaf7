"""The profiling pipeline per plate: Dask equals sequential, runs resume, failures are named.

The Kedro runs are real ``kedro run`` processes; the Dask run starts a real LocalCluster of 2
worker processes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from morphoflow.execution.runner import PartitionsFailed
from morphoflow.execution.store import PartitionStore
from morphoflow.pipelines.profiling.nodes import gather_plates, profile_plates

WELLS_RAW = "data/04_feature/profiles_well_raw.parquet"
MANIFEST = "data/08_reporting/profiling/plates.csv"


def _manifest(project: Path) -> pd.DataFrame:
    return pd.read_csv(project / MANIFEST)


def _max_abs_diff(a: pd.DataFrame, b: pd.DataFrame) -> float:
    assert list(a.columns) == list(b.columns) and a.shape == b.shape
    meta = [c for c in a.columns if c.startswith("Metadata_")]
    pd.testing.assert_frame_equal(a[meta], b[meta])
    features = [c for c in a.columns if c not in meta]
    return float(np.nanmax(np.abs(a[features].to_numpy() - b[features].to_numpy())))


@pytest.mark.slow
def test_dask_equals_sequential_and_a_rerun_redoes_only_stale_plates(
    kedro_project: Path, run_pipeline, tiny_simulated_screen: Path
) -> None:
    params = {"screen.root": tiny_simulated_screen}
    run_pipeline("profiling", params)
    sequential = pd.read_parquet(kedro_project / WELLS_RAW)
    first = _manifest(kedro_project)
    plates = sorted(first["Metadata_Plate"])
    assert len(plates) == 4 and set(first["status"]) == {"computed"}
    assert first["pid"].nunique() == 1  # the sequential backend runs in the Kedro process

    # a second run recomputes nothing
    run_pipeline("profiling", params)
    second = _manifest(kedro_project)
    assert set(second["status"]) == {"reused"}
    assert list(second["fingerprint"]) == list(first["fingerprint"])

    # touching one plate's image recomputes that plate only, with the same result
    table = pd.read_parquet(kedro_project / "data/03_primary/image_table.parquet")
    site = table[table["Metadata_Plate"] == plates[1]].iloc[0]
    image = tiny_simulated_screen / site["Path_DNA"]
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    run_pipeline("profiling", params)
    third = _manifest(kedro_project).set_index("Metadata_Plate")
    assert third.loc[plates[1], "status"] == "computed"
    assert set(third.drop(index=plates[1])["status"]) == {"reused"}
    assert _max_abs_diff(pd.read_parquet(kedro_project / WELLS_RAW), sequential) <= 1e-9

    # the same pipeline on a LocalCluster of 2 workers: same profiles, computed by 2 workers
    run_pipeline(
        "profiling",
        {
            **params,
            "execution.backend": "dask",
            "execution.workers": 2,
            "execution.resume": "false",
            "execution.dashboard_address": "''",
        },
    )
    distributed = _manifest(kedro_project)
    assert set(distributed["status"]) == {"computed"}
    assert distributed["pid"].nunique() == 2
    assert not set(distributed["pid"]) & set(first["pid"])  # not the Kedro process
    assert _max_abs_diff(pd.read_parquet(kedro_project / WELLS_RAW), sequential) <= 1e-9


def _params() -> dict[str, dict]:
    from tests.conftest import PROJECT_ROOT

    text = (PROJECT_ROOT / "conf/base/parameters_profiling.yml").read_text()
    return yaml.safe_load(text)


@pytest.mark.slow
def test_a_failing_plate_is_named_the_others_are_kept_and_nothing_is_gathered(
    tiny_simulated_screen: Path, tmp_path: Path
) -> None:
    from morphoflow.screen.table import load_screen

    table = load_screen(tiny_simulated_screen)
    broken_plate = sorted(table["Metadata_Plate"].unique())[2]
    # a copy of the screen whose plate has one unreadable DNA image
    screen = tmp_path / "screen"
    os.symlink(tiny_simulated_screen, tmp_path / "original")
    rows = table[table["Metadata_Plate"] == broken_plate]
    for column in [c for c in table.columns if c.startswith("Path_")]:
        table[column] = "../original/" + table[column].astype(str)
    screen.mkdir()
    broken = screen / "broken_dna.tif"
    broken.write_bytes(b"not a tiff")
    table.loc[rows.index[0], "Path_DNA"] = "broken_dna.tif"

    params = _params()
    store = PartitionStore(tmp_path / "store")
    args = (
        table,
        store,
        screen,
        params["nuclei"],
        params["illumination"],
        params["crops"],
        params["features"],
        params["inference"],
        {**params["execution"], "retries": 0},
    )
    with pytest.raises(PartitionsFailed) as error:
        profile_plates(*args)
    assert set(error.value.failures) == {broken_plate}
    assert "broken_dna.tif" in error.value.failures[broken_plate]
    assert f"{broken_plate}: " in str(error.value)
    key = next(iter(error.value.results.values()))["screen_key"]
    stored = {p.name for p in (store.root / key).iterdir()}
    assert stored == set(table["Metadata_Plate"]) - {broken_plate}  # the others are kept

    # the file repaired, the re-run computes the failed plate only; then the screen is gathered
    import shutil

    shutil.copyfile(tiny_simulated_screen / rows["Path_DNA"].iloc[0], broken)
    manifest = profile_plates(*args)
    status = manifest.set_index("Metadata_Plate")["status"]
    assert status[broken_plate] == "computed"
    assert set(status.drop(index=broken_plate)) == {"reused"}
    wells, index = gather_plates(manifest, store)
    assert set(wells["Metadata_Plate"]) == set(table["Metadata_Plate"])
    assert len(index) == manifest["n_cells"].sum()

    # a partition replaced since the manifest was written is refused, not mixed in
    stale = manifest.copy()
    stale.loc[0, "fingerprint"] = "0" * 64
    with pytest.raises(FileNotFoundError, match="missing or was replaced"):
        gather_plates(stale, store)
