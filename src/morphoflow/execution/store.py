"""Per-partition outputs of a screen, kept under the screen's key, written atomically.

Layout of a :class:`PartitionStore` rooted at ``ROOT`` (the catalog's ``plate_store`` entry)::

    ROOT/<screen key>/<plate>/_partition.json   fingerprint, counts, timing, worker
    ROOT/<screen key>/<plate>/...               the partition's files (labels, tables, crops)

The screen key (:func:`screen_key`) is derived from the image table and the screen folder, so
two screens whose plates share names never mix. A partition is written into a staging folder
beside its place and renamed into it when complete (:func:`morphoflow.atomic.atomic_dir`): a
reader, or a re-run after a killed worker, sees the previous complete partition or the new
one, never a half-written one. ``_partition.json`` carries the partition's fingerprint
(:func:`partition_fingerprint`: its image-table rows, each input file's size and modification
time, the settings and model files); a re-run skips a partition whose stored fingerprint
matches (:meth:`PartitionStore.is_current`) and redoes only missing or stale ones.

The store is a local or shared (NFS, Lustre, ...) filesystem path that the driver and every
worker see at the same path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from morphoflow.atomic import atomic_dir

RECORD = "_partition.json"
"""Name of the record file of a partition (written last, inside the staging folder)."""

_SORT = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]


def row_hashes(table: pd.DataFrame) -> np.ndarray:
    """One stable 64-bit hash per row of ``table`` (pandas' ``hash_pandas_object`` over the
    columns in name order, no index), vectorised: 1.5 M rows in about a second."""
    columns = sorted(table.columns)
    return pd.util.hash_pandas_object(table[columns], index=False, categorize=False).to_numpy()


def _table_digest(table: pd.DataFrame, hashes: np.ndarray | None = None) -> bytes:
    """Digest of a table's content, independent of its row order (the sorted row hashes)."""
    hashes = row_hashes(table) if hashes is None else np.asarray(hashes)
    columns = ",".join(sorted(table.columns)).encode()
    return hashlib.sha256(columns + np.sort(hashes).tobytes()).digest()


def screen_key(
    image_table: pd.DataFrame, root: str | Path, *, hashes: np.ndarray | None = None
) -> str:
    """Key of a screen: its image table (rows, paths, annotations) and its folder.

    Cheap (no file is read or stat-ed; 1.5 M rows hash in seconds) and independent of file
    contents, so editing one plate's images changes that plate's fingerprint but not the key
    (the other plates stay reusable).

    Args:
        image_table: Canonical image table (one row per site).
        root: Screen folder (resolved to an absolute path).
        hashes: :func:`row_hashes` of the table, when already computed.

    Returns:
        16 hex digits of a SHA-256.
    """
    digest = hashlib.sha256(str(Path(root).resolve()).encode())
    digest.update(_table_digest(image_table, hashes))
    return digest.hexdigest()[:16]


def _file_state(path: Path) -> str:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def inputs_digest(
    rows: pd.DataFrame,
    settings: Mapping[str, Any],
    files: Mapping[str, str | Path | None] | None = None,
    *,
    hashes: np.ndarray | None = None,
) -> str:
    """The part of a partition's fingerprint the driver computes without touching the images:
    its image-table rows, the settings and the named model files' path, size and mtime.

    Args:
        rows: The partition's image-table rows.
        settings: Every setting that changes the result (JSON-serialisable; others by str).
        files: Named extra input files (model weights).
        hashes: :func:`row_hashes` of ``rows``, when already computed for the whole table.

    Returns:
        64 hex digits of a SHA-256.
    """
    digest = hashlib.sha256(_table_digest(rows, hashes))
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, path in sorted((files or {}).items()):
        state = "none" if path is None else f"{path}={_file_state(Path(path))}"
        digest.update(f"{name}:{state}\n".encode())
    return digest.hexdigest()


def image_files_digest(rows: pd.DataFrame, root: str | Path) -> str:
    """Size and modification time (ns) of every ``Path_*`` file of the rows.

    The part of the fingerprint that stats the images: computed by the worker that owns the
    partition (at 1.5 M sites x 5 channels the stats would dominate the driver's time).
    """
    root = Path(root)
    ordered = rows.sort_values(_SORT, kind="stable")
    digest = hashlib.sha256()
    for column in sorted(c for c in ordered.columns if c.startswith("Path_")):
        for value in ordered[column]:
            digest.update(f"{value}={_file_state(root / str(value))}\n".encode())
    return digest.hexdigest()


def complete_fingerprint(inputs: str, rows: pd.DataFrame, root: str | Path) -> str:
    """The fingerprint from the driver's :func:`inputs_digest` and the rows' image files
    (:func:`image_files_digest`, computed here: the worker's part).

    Returns:
        64 hex digits of a SHA-256.
    """
    combined = f"{inputs}:{image_files_digest(rows, root)}"
    return hashlib.sha256(combined.encode()).hexdigest()


def partition_fingerprint(
    rows: pd.DataFrame,
    root: str | Path,
    settings: Mapping[str, Any],
    files: Mapping[str, str | Path | None] | None = None,
) -> str:
    """Fingerprint of one partition's inputs: what a stored result must match to be reused.

    Args:
        rows: The partition's image-table rows.
        root: Screen folder the ``Path_*`` columns are relative to.
        settings: Every setting that changes the result (JSON-serialisable; others by str).
        files: Named extra input files (model weights): their path, size and mtime count.

    Returns:
        :func:`complete_fingerprint` of :func:`inputs_digest` (rows, settings, files) and
        the image files of the rows.
    """
    return complete_fingerprint(inputs_digest(rows, settings, files), rows, root)


_UNSAFE = set('/\\:*?"<>|\0')


def check_partition_name(name: str) -> str:
    """A partition (plate) name usable as one folder name on any shared filesystem.

    Raises:
        ValueError: Empty, ``.``-leading, or containing a path separator, a control
            character or one of ``: * ? " < > |`` (refused by SMB/Windows shares).
    """
    text = str(name)
    bad = sorted({c for c in text if c in _UNSAFE or ord(c) < 32})
    if not text or text.startswith(".") or bad:
        raise ValueError(
            f"plate name {text!r} cannot name a partition folder (empty, leading '.', or the "
            f"characters {bad}): rename the plate in load_data.csv / the platemap"
        )
    return text


class PartitionStore:
    """Partitions of screens under one root folder (see the module docstring).

    Args:
        root: Folder of the store (created on first write).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"PartitionStore({str(self.root)!r})"

    def partition_dir(self, key: str, name: str) -> Path:
        """Folder of partition ``name`` of screen ``key``."""
        return self.root / key / check_partition_name(name)

    def relative(self, key: str, name: str) -> str:
        """``partition_dir`` relative to the store root, POSIX style (for path columns)."""
        return f"{key}/{check_partition_name(name)}"

    def record(self, key: str, name: str) -> dict[str, Any] | None:
        """The stored record of a complete partition, or None when there is none."""
        path = self.partition_dir(key, name) / RECORD
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def current_record(self, key: str, name: str, fingerprint: str) -> dict[str, Any] | None:
        """The stored record when the partition exists and was computed from the same
        inputs (its fingerprint matches), else None."""
        record = self.record(key, name)
        return record if record is not None and record.get("fingerprint") == fingerprint else None

    def is_current(self, key: str, name: str, fingerprint: str) -> bool:
        """Whether the stored partition exists and was computed from the same inputs."""
        return self.current_record(key, name, fingerprint) is not None

    def remove_stale_staging(self, key: str) -> list[Path]:
        """Remove staging folders left by killed writers of screen ``key``; returns them.

        Call it when no writer of this screen is running (the driver does, before it
        submits any partition).
        """
        folder = self.root / key
        if not folder.is_dir():
            return []
        stale = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(".")]
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        return stale

    @contextmanager
    def write(self, key: str, name: str, record: Mapping[str, Any]) -> Iterator[Path]:
        """A staging folder that becomes partition ``name`` when the block succeeds.

        ``record`` (plus anything the block adds to the yielded folder) is written to
        ``_partition.json`` last; the previous partition, if any, is replaced as a whole.
        A failing block (or a killed process) leaves the previous partition as it was.

        Yields:
            The staging folder.
        """
        target = self.partition_dir(key, name)
        with atomic_dir(target) as staging:
            yield staging
            with open(staging / RECORD, "w") as handle:
                json.dump(dict(record), handle, indent=2, default=str)
                handle.flush()
                os.fsync(handle.fileno())
