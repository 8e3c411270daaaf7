"""Atomic writes: the destination is either the old file or the complete new one."""

from __future__ import annotations

from pathlib import Path

import pytest

from morphoflow.atomic import atomic_path, write_text_atomic


def test_success_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "report.json"
    write_text_atomic(target, "old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "labels.tif"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.tif"]


def test_suffix_is_kept_for_format_sniffing_writers(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "crops.npz", suffix=".npz") as tmp:
        assert tmp.suffix == ".npz" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "crops.npz").read_bytes() == b"x"


def test_atomic_dir_replaces_a_tree_or_leaves_it(tmp_path: Path) -> None:
    from morphoflow.atomic import atomic_dir

    target = tmp_path / "repo"
    with atomic_dir(target) as staging:
        (staging / "a.txt").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(target) as staging:
        (staging / "b.txt").write_text("half")
        raise RuntimeError("failed build")
    assert [p.name for p in target.iterdir()] == ["a.txt"]
    with atomic_dir(target) as staging:
        (staging / "c.txt").write_text("2")
    assert [p.name for p in target.iterdir()] == ["c.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]


def test_atomic_outputs_get_the_umask_mode_not_the_temp_file_mode(tmp_path: Path) -> None:
    """mkstemp/mkdtemp create 0600/0700: a plate store shared by a team must stay readable."""
    import os

    from morphoflow.atomic import atomic_dir, atomic_path

    previous = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "table.parquet") as tmp:
            tmp.write_bytes(b"x")
        with atomic_dir(tmp_path / "partition") as staging:
            (staging / "f").write_bytes(b"y")
    finally:
        os.umask(previous)
    assert (tmp_path / "table.parquet").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "partition").stat().st_mode & 0o777 == 0o755
