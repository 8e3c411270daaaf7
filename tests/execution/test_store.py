"""The partition store: screen keys, fingerprints, atomic partitions."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from morphoflow.execution.store import (
    RECORD,
    PartitionStore,
    check_partition_name,
    partition_fingerprint,
    screen_key,
)


def _table(root: Path) -> pd.DataFrame:
    rows = []
    for plate in ("P1", "P2"):
        for well in ("A01", "A02"):
            path = f"{plate}/{well}.tif"
            (root / plate).mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(b"x" * 10)
            rows.append(
                {
                    "Metadata_Plate": plate,
                    "Metadata_Well": well,
                    "Metadata_Site": 1,
                    "Path_DNA": path,
                }
            )
    return pd.DataFrame(rows)


def test_screen_key_is_stable_and_names_the_screen(tmp_path: Path) -> None:
    table = _table(tmp_path / "a")
    key = screen_key(table, tmp_path / "a")
    assert key == screen_key(table.sample(frac=1, random_state=0), tmp_path / "a")  # row order
    assert len(key) == 16
    # same plate names, another screen folder or another table: another key
    assert key != screen_key(table, tmp_path / "b")
    assert key != screen_key(table.assign(Metadata_Site=2), tmp_path / "a")
    # the key does not read files: touching an image keeps it (its plate's fingerprint moves)
    os.utime(tmp_path / "a" / "P1" / "A01.tif", ns=(1, 1))
    assert key == screen_key(table, tmp_path / "a")


def test_fingerprint_moves_with_files_settings_and_models(tmp_path: Path) -> None:
    root = tmp_path / "s"
    table = _table(root)
    p1 = table[table["Metadata_Plate"] == "P1"]
    p2 = table[table["Metadata_Plate"] == "P2"]
    model = tmp_path / "model.pt"
    model.write_bytes(b"m")
    base = partition_fingerprint(p1, root, {"views": 1}, {"model": model})
    other = partition_fingerprint(p2, root, {"views": 1}, {"model": model})
    assert base == partition_fingerprint(p1, root, {"views": 1}, {"model": model})
    assert partition_fingerprint(p1, root, {"views": 8}, {"model": model}) != base
    os.utime(root / "P1" / "A02.tif", ns=(10**9, 10**9))
    assert partition_fingerprint(p1, root, {"views": 1}, {"model": model}) != base
    assert partition_fingerprint(p2, root, {"views": 1}, {"model": model}) == other
    model.write_bytes(b"mm")
    assert partition_fingerprint(p2, root, {"views": 1}, {"model": model}) != other


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "..", "a\\b", "P:2", "P*", "tab\tname"])
def test_partition_names_that_are_not_one_folder_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="plate name"):
        check_partition_name(name)


def test_a_failed_write_keeps_the_previous_partition(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "store")
    with store.write("k", "P1", {"fingerprint": "one"}) as staging:
        (staging / "table.txt").write_text("first")
    assert store.is_current("k", "P1", "one") and not store.is_current("k", "P1", "two")
    record = {"fingerprint": "two"}
    with pytest.raises(RuntimeError, match="boom"):
        with store.write("k", "P1", record) as staging:
            (staging / "table.txt").write_text("half")
            raise RuntimeError("boom")
    folder = store.partition_dir("k", "P1")
    assert (folder / "table.txt").read_text() == "first"
    assert store.record("k", "P1") == {"fingerprint": "one"}
    assert [p.name for p in (tmp_path / "store" / "k").iterdir()] == ["P1"]  # no staging left
    # the record is written last, with what the block added to it
    with store.write("k", "P1", record) as staging:
        record["n_cells"] = 3
    assert store.record("k", "P1") == {"fingerprint": "two", "n_cells": 3}
    assert sorted(p.name for p in folder.iterdir()) == [RECORD]  # replaced as a whole


def test_stale_staging_of_a_killed_writer_is_removed(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path)
    stale = tmp_path / "k" / ".P1.abc123"
    stale.mkdir(parents=True)
    (stale / "half.parquet").write_bytes(b"\0")
    assert store.remove_stale_staging("k") == [stale]
    assert not stale.exists()
    assert store.remove_stale_staging("missing") == []
