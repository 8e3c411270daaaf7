"""The combined training set: cells of strong treatments from several sources, plus controls.

The weakly supervised (WSL) model learns to tell treatments apart from single-cell crops. A
treatment whose wells do not differ from the negative controls (see
:mod:`morphoflow.assembly.strength`) only teaches the model noise, so the combined set keeps
the *strong* (source, treatment) pairs and the negative controls:

- **Classes** (``Metadata_Label``) are treatment names. A treatment name shared by several
  sources is one class (its cells from every source where it is strong are pooled: the same
  compound is the same class); a name found in one source only is a class of its own. A
  treatment strong in one source and not in another contributes only the cells of the source
  where it is strong. Names are compared verbatim: harmonise spellings upstream.
- **Negative controls** stay in the set as *two kinds of class*, one per control treatment
  name (e.g. ``DMSO`` and ``untreated``), each pooled over the sources. They are kept apart
  rather than merged because they are different conditions (vehicle vs. no vehicle): merging
  them would ask the model to map a real, if small, phenotypic difference onto one class, and
  keeping them lets the model (and later analyses) measure it. The control classes also anchor
  the feature space that profiles are later sphered on.
- **Control cap.** Control wells are many and treatments' wells few, so controls can dominate
  the set. ``max_control_cells_per_plate`` keeps at most that many cells *per plate and per
  control class* (so both control kinds survive on every plate), drawn uniformly at random
  without replacement; treatment cells are never dropped. The WSL trainer re-balances classes
  per epoch anyway; the cap bounds the set's size and storage.

Every function is deterministic: random draws are seeded from ``seed`` and the (source, plate,
class) they concern, and tables are sorted, so the input row order never changes the result.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from morphoflow.profiling.normalize import CONTROL_QUERY, control_mask

SOURCE = "Metadata_Source"
PLATE = "Metadata_Plate"
WELL = "Metadata_Well"
SITE = "Metadata_Site"
OBJECT = "Metadata_ObjectNumber"
TREATMENT = "Metadata_Treatment"
MOA = "Metadata_MoA"
CONTROL_TYPE = "Metadata_ControlType"
LABEL = "Metadata_Label"

#: Columns the crop index must have (``Metadata_Site`` is used too when present).
INDEX_COLUMNS: tuple[str, ...] = (SOURCE, PLATE, WELL, OBJECT, TREATMENT, CONTROL_TYPE)
#: Columns the strength table must have.
STRENGTH_REQUIRED: tuple[str, ...] = (SOURCE, TREATMENT, "is_strong")
#: Columns of the label table of :func:`harmonise`.
LABEL_COLUMNS: tuple[str, ...] = (SOURCE, TREATMENT, CONTROL_TYPE, MOA, LABEL)


def _require(df: Any, columns: tuple[str, ...] | list[str], name: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks the columns {missing}")


def _cell_keys(df: pd.DataFrame) -> list[str]:
    """Columns that identify one cell: source, plate, well, (site,) object number."""
    return [SOURCE, PLATE, WELL, *([SITE] if SITE in df.columns else []), OBJECT]


def _seed(seed: int, *parts: Any) -> np.random.Generator:
    key = zlib.crc32("/".join(map(str, parts)).encode())
    return np.random.default_rng(np.random.SeedSequence([seed, key]))


# --------------------------------------------------------------------------- selection


def select_strong(strength_table: pd.DataFrame) -> pd.DataFrame:
    """Keep the strong (source, treatment) pairs of a strength table.

    Args:
        strength_table: Output of :func:`~morphoflow.assembly.strength.phenotype_strength`
            (at least ``Metadata_Source``, ``Metadata_Treatment`` and a boolean
            ``is_strong``).

    Returns:
        The rows with ``is_strong``, all columns, sorted by source and treatment, index reset.

    Raises:
        ValueError: If a column is missing, ``is_strong`` is not boolean, or a
            (source, treatment) pair occurs twice.
    """
    _require(strength_table, STRENGTH_REQUIRED, "strength_table")
    if not pd.api.types.is_bool_dtype(strength_table["is_strong"].dtype):
        raise ValueError(
            f"strength_table: is_strong must be boolean, got {strength_table['is_strong'].dtype}"
        )
    duplicated = strength_table.duplicated([SOURCE, TREATMENT])
    if duplicated.any():
        first = strength_table.loc[duplicated, [SOURCE, TREATMENT]].iloc[0].tolist()
        raise ValueError(f"strength_table has duplicate (source, treatment) pairs, e.g. {first}")
    kept = strength_table[strength_table["is_strong"].to_numpy()]
    return kept.sort_values([SOURCE, TREATMENT], kind="mergesort").reset_index(drop=True)


def harmonise(kept: pd.DataFrame, controls: pd.DataFrame) -> pd.DataFrame:
    """Map every kept (source, treatment) pair and every control pair to its class label.

    Labels are treatment names: a name shared by several sources is one class, a
    source-specific name its own class, and each control treatment name (e.g. ``DMSO``,
    ``untreated``) one control class pooled over sources (see the module docstring).

    Args:
        kept: Strong pairs (:func:`select_strong`): ``Metadata_Source``,
            ``Metadata_Treatment`` and optionally ``Metadata_MoA``.
        controls: Any table with ``Metadata_Source``, ``Metadata_Treatment`` and
            ``Metadata_ControlType`` (e.g. the crop index); its ``negcon`` rows give the
            control pairs, other rows are ignored.

    Returns:
        One row per pair with :data:`LABEL_COLUMNS` (``Metadata_ControlType`` ``"negcon"`` for
        controls, ``""`` for treatments; ``Metadata_MoA`` from ``kept``, ``""`` for controls),
        sorted by label and source.

    Raises:
        ValueError: If a column is missing, a name is a control in one place and a kept
            treatment in another, or a treatment name has two different MoAs across sources.
    """
    _require(kept, [SOURCE, TREATMENT], "kept")
    _require(controls, [SOURCE, TREATMENT, CONTROL_TYPE], "controls")
    treatments = kept[[SOURCE, TREATMENT]].drop_duplicates().copy()
    treatments[CONTROL_TYPE] = ""
    moa = kept[MOA] if MOA in kept.columns else pd.Series("", index=kept.index)
    treatments[MOA] = moa.loc[treatments.index].fillna("").astype(str).to_numpy()

    is_control = control_mask(controls, CONTROL_QUERY)
    control_pairs = controls.loc[is_control, [SOURCE, TREATMENT]].drop_duplicates().copy()
    control_pairs[CONTROL_TYPE] = "negcon"
    control_pairs[MOA] = ""

    clash = sorted(set(treatments[TREATMENT]) & set(control_pairs[TREATMENT]), key=str)
    if clash:
        raise ValueError(
            f"kept: treatment names that are negative controls elsewhere: {clash} "
            "(a class cannot be both a treatment and a control)"
        )
    known = treatments[treatments[MOA] != ""]
    moas = known.groupby(TREATMENT)[MOA].nunique()
    if (moas > 1).any():
        name = moas[moas > 1].index[0]
        values = sorted(known.loc[known[TREATMENT] == name, MOA].unique())
        raise ValueError(f"kept: treatment {name!r} has different MoAs across sources: {values}")

    labels = pd.concat([treatments, control_pairs], ignore_index=True)
    labels[LABEL] = labels[TREATMENT].astype(str)
    labels = labels.sort_values([LABEL, SOURCE], kind="mergesort").reset_index(drop=True)
    return labels[list(LABEL_COLUMNS)]


# --------------------------------------------------------------------------- combined index


def combined_index(
    crop_index: pd.DataFrame,
    strength_table: pd.DataFrame,
    max_control_cells_per_plate: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Build the WSL training index: cells of strong treatments plus negative-control cells.

    Only the sources of ``strength_table`` are used (crop-index rows of other sources are
    left out). Within them, a cell is kept when its (source, treatment) pair is strong, or when
    it is a negative-control cell (``Metadata_ControlType == "negcon"``); control cells are
    then capped per plate and control class (module docstring).

    Args:
        crop_index: One row per cell: :data:`INDEX_COLUMNS` (plus ``Metadata_Site`` when cells
            are numbered per site), ``Path_Crops``, ``Metadata_CropIndex`` and any other
            columns, which are carried.
        strength_table: Output of :func:`~morphoflow.assembly.strength.phenotype_strength`.
        max_control_cells_per_plate: At most this many cells per plate and control class
            (>= 1), or None to keep every control cell.
        seed: Seed of the control draw (>= 0).

    Returns:
        The kept rows of ``crop_index`` with a ``Metadata_Label`` column (the class, see
        :func:`harmonise`), sorted by the cell keys (source, plate, well, site, object
        number), index reset. ``attrs["parameters"]`` holds the cap and seed (read by
        :func:`manifest`).

    Raises:
        ValueError: If a column is missing, a cell occurs twice, an argument is out of range,
            a strong pair has no cell in ``crop_index``, or a source of ``strength_table`` has
            no control cell (the message names the pairs or sources).
    """
    _require(crop_index, INDEX_COLUMNS, "crop_index")
    if LABEL in crop_index.columns:
        raise ValueError(f"crop_index already has a {LABEL} column")
    if max_control_cells_per_plate is not None and (
        isinstance(max_control_cells_per_plate, bool)
        or not isinstance(max_control_cells_per_plate, int | np.integer)
        or max_control_cells_per_plate < 1
    ):
        raise ValueError(
            "max_control_cells_per_plate must be None or an integer >= 1, got "
            f"{max_control_cells_per_plate!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    keys = _cell_keys(crop_index)
    duplicated = crop_index.duplicated(keys)
    if duplicated.any():
        first = crop_index.loc[duplicated, keys].iloc[0].tolist()
        raise ValueError(f"crop_index has duplicate cells ({keys}), e.g. {first}")

    kept = select_strong(strength_table)
    sources = set(strength_table[SOURCE])
    cells = crop_index[crop_index[SOURCE].isin(sources)]
    labels = harmonise(kept, cells)

    without = sorted(sources - set(labels.loc[labels[CONTROL_TYPE] == "negcon", SOURCE]), key=str)
    if without:
        raise ValueError(
            f"crop_index: sources of strength_table without control cells ({CONTROL_QUERY}): "
            f"{without}"
        )
    present = cells[[SOURCE, TREATMENT]].drop_duplicates()
    missing = kept[[SOURCE, TREATMENT]].merge(present, how="left", indicator=True)
    missing = missing[missing["_merge"] == "left_only"]
    if len(missing):
        pairs = list(missing[[SOURCE, TREATMENT]].itertuples(index=False, name=None))
        raise ValueError(f"crop_index has no cell of the strong pairs (source, treatment) {pairs}")

    is_control = control_mask(cells, CONTROL_QUERY)
    lookup = {
        (s, t, c == "negcon"): label
        for s, t, c, label in labels[[SOURCE, TREATMENT, CONTROL_TYPE, LABEL]].itertuples(
            index=False, name=None
        )
    }
    label = [
        lookup.get((s, t, bool(c)))
        for s, t, c in zip(cells[SOURCE], cells[TREATMENT], is_control, strict=True)
    ]
    out = cells.assign(**{LABEL: label})
    out = out[out[LABEL].notna().to_numpy()]
    out = out.sort_values(keys, kind="mergesort").reset_index(drop=True)
    if max_control_cells_per_plate is not None:
        out = _cap_controls(out, int(max_control_cells_per_plate), int(seed))
    out.attrs["parameters"] = {
        "max_control_cells_per_plate": (
            None if max_control_cells_per_plate is None else int(max_control_cells_per_plate)
        ),
        "seed": int(seed),
    }
    return out


def _cap_controls(cells: pd.DataFrame, cap: int, seed: int) -> pd.DataFrame:
    """Keep at most ``cap`` control cells per (source, plate, class); ``cells`` is sorted."""
    is_control = control_mask(cells, CONTROL_QUERY)
    keep = np.ones(len(cells), dtype=bool)
    groups = cells[is_control].groupby([SOURCE, PLATE, LABEL], sort=True).indices
    control_rows = np.flatnonzero(is_control)
    for key, positions in groups.items():
        if len(positions) > cap:
            rows = control_rows[positions]
            drop = _seed(seed, *key).permutation(len(rows))[cap:]
            keep[rows[drop]] = False
    return cells[keep].reset_index(drop=True)


# --------------------------------------------------------------------------- manifest


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars -> Python, mappings/sequences recursively."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _canonical(value: Any) -> Any:
    """Hash form of a key value: integral numbers as int (so 1 and 1.0 agree), else str."""
    if isinstance(value, bool | np.bool_):
        return str(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    return str(value)


def content_hash(combined: pd.DataFrame) -> str:
    """sha256 of the sorted cell keys and labels of a combined index.

    The rows (source, plate, well, site when present, object number, label) are written as
    JSON arrays, sorted and hashed with the column names, so the hash depends on which cells
    are in which class, not on row or column order, nor on other columns.

    Args:
        combined: Output of :func:`combined_index`.

    Returns:
        The hex digest.

    Raises:
        ValueError: If a key column or ``Metadata_Label`` is missing.
    """
    _require(combined, [*_cell_keys(combined), LABEL], "combined")
    columns = [*_cell_keys(combined), LABEL]
    lines = sorted(
        json.dumps([_canonical(v) for v in row], ensure_ascii=True)
        for row in combined[columns].itertuples(index=False, name=None)
    )
    digest = hashlib.sha256(json.dumps(columns).encode())
    for line in lines:
        digest.update(b"\n" + line.encode())
    return digest.hexdigest()


def manifest(
    strength_table: pd.DataFrame,
    combined: pd.DataFrame,
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Describe a combined training set (JSON-serialisable).

    Args:
        strength_table: The strength table the set was selected from.
        combined: The output of :func:`combined_index`.
        parameters: Extra parameters to record; they update the ones read from
            ``strength_table.attrs["parameters"]`` (under ``"strength"``) and
            ``combined.attrs["parameters"]`` (under ``"combined"``), which survive pandas
            operations and Parquet but not every storage format: pass them here to be sure.

    Returns:
        ``{"version": sha256 of the sorted cell keys (:func:`content_hash`), "n_cells",
        "n_classes", "parameters", "sources": {source: {"treatments_total",
        "treatments_kept", "cells_kept", "treatment_cells", "control_cells", "plates"}},
        "classes": {label: {"cells", "control", "sources"}}}``, sources and classes sorted by
        name, plates a sorted list of the plate names with kept cells.

    Raises:
        ValueError: If a required column of either table is missing.
    """
    _require(strength_table, STRENGTH_REQUIRED, "strength_table")
    _require(combined, [*_cell_keys(combined), LABEL, CONTROL_TYPE], "combined")
    is_control = control_mask(combined, CONTROL_QUERY)
    cells = combined.assign(_control=is_control)

    sources: dict[str, Any] = {}
    all_sources = sorted(set(strength_table[SOURCE]) | set(cells[SOURCE]), key=str)
    for source in all_sources:
        rows = strength_table[strength_table[SOURCE] == source]
        mine = cells[cells[SOURCE] == source]
        sources[str(source)] = {
            "treatments_total": int(len(rows)),
            "treatments_kept": int(rows["is_strong"].astype(bool).sum()),
            "cells_kept": int(len(mine)),
            "treatment_cells": int((~mine["_control"]).sum()),
            "control_cells": int(mine["_control"].sum()),
            "plates": sorted({str(p) for p in mine[PLATE]}),
        }
    classes: dict[str, Any] = {}
    for label, group in cells.groupby(LABEL, sort=True):
        classes[str(label)] = {
            "cells": int(len(group)),
            "control": bool(group["_control"].all()),
            "sources": sorted({str(s) for s in group[SOURCE]}),
        }
    recorded: dict[str, Any] = {
        "strength": dict(strength_table.attrs.get("parameters", {})),
        "combined": dict(combined.attrs.get("parameters", {})),
        "selection": "is_strong: distance > threshold and n_replicates >= min_replicates",
    }
    recorded.update(parameters or {})
    return _plain(
        {
            "version": content_hash(combined),
            "n_cells": int(len(combined)),
            "n_classes": len(classes),
            "parameters": recorded,
            "sources": sources,
            "classes": classes,
        }
    )
