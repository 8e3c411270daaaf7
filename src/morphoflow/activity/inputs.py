"""Reading and validating the inputs of compound activity prediction.

Inputs (Moshkov et al., "Predicting compound activity from phenotypic profiles and chemical
structures", Nat Commun 2023, use the same three tables):

- ``compounds.csv``: ``Metadata_Treatment`` (the platemap's treatment ids) and
  ``Metadata_SMILES``. Rows with an empty SMILES are negative controls: excluded and counted.
- ``assays.csv`` or ``assays.parquet``: ``Metadata_Treatment`` + one column per assay with the
  values 1 / 0 / empty (not measured).
- Treatment-level profiles per modality (Parquet): ``Metadata_Treatment`` + feature columns
  (every column not starting with ``Metadata_``); negative-control rows
  (``Metadata_ControlType == "negcon"``) are ignored. The morphology table may carry
  ``Metadata_CellCount`` (cells summed over the treatment's wells) and ``Metadata_WellCount``:
  the cell-count baseline uses their ratio, the mean number of cells per well.

Everything here raises :class:`ActivityInputError` (a ``ValueError``) naming the file, the CSV
line (header = line 1) and the column, or returns a listed warning where a row or column can be
dropped without changing the meaning of the rest. Nothing is written.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

TREATMENT = "Metadata_Treatment"
SMILES = "Metadata_SMILES"
CONTROL_TYPE = "Metadata_ControlType"
CELL_COUNT = "Metadata_CellCount"
WELL_COUNT = "Metadata_WellCount"
#: Optional column with the mean number of cells per well (used when present).
CELLS_PER_WELL = "Metadata_CellsPerWell"


class ActivityInputError(ValueError):
    """Bad activity input: the message names the file, line and column."""


class ActivityInputWarning(UserWarning):
    """A row, column or assay was dropped from the activity inputs (listed in the report)."""


@dataclass
class ActivityData:
    """Validated, aligned inputs of one activity run.

    Attributes:
        compounds: One row per compound (controls removed), index ``Metadata_Treatment``,
            column ``Metadata_SMILES`` (str). Includes compounds without any assay label.
        labels: Float32 frame (labelled compounds x kept assays), values 1.0 / 0.0 / NaN
            (not measured), index ``Metadata_Treatment``; every row has at least one label.
        profiles: Modality name (``"mo"``, ``"ge"``) -> float32 frame (compounds x features),
            index ``Metadata_Treatment``, only finite values; covers every compound in
            ``compounds``.
        cells_per_well: Mean cells per well per compound (float64 Series) or None.
        report: What was excluded and why (JSON-ready): ``n_controls_excluded``,
            ``dropped_assays`` (name -> reason), ``dropped_features`` (modality -> names),
            ``dropped_compounds`` (reason -> ids), ``warnings`` (messages).
    """

    compounds: pd.DataFrame
    labels: pd.DataFrame
    profiles: dict[str, pd.DataFrame]
    cells_per_well: pd.Series | None
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def assays(self) -> list[str]:
        """Assay names, in column order."""
        return [str(c) for c in self.labels.columns]

    @property
    def unlabelled(self) -> list[str]:
        """Compounds without any assay label (the ones a screening team wants predicted)."""
        return [t for t in self.compounds.index if t not in self.labels.index]


def _line(position: int) -> int:
    """CSV line of the ``position``-th data row (the header is line 1)."""
    return int(position) + 2


def _where(path: str, position: int, is_csv: bool) -> str:
    return f"{path} line {_line(position)}" if is_csv else f"{path} row {int(position)}"


def read_compounds(path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Read ``compounds.csv``: one row per compound, SMILES parsed by RDKit.

    Args:
        path: The CSV file (columns ``Metadata_Treatment``, ``Metadata_SMILES``; more allowed).

    Returns:
        ``(compounds, controls)``: the compounds (index ``Metadata_Treatment``, column
        ``Metadata_SMILES``), and the ids of rows with an empty SMILES (negative controls,
        excluded).

    Raises:
        FileNotFoundError: No file.
        ActivityInputError: Missing column, empty treatment id, duplicated treatment id, or a
            SMILES RDKit cannot parse (file and line named).
    """
    from rdkit import Chem, RDLogger

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"compounds file not found: {path}")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in (TREATMENT, SMILES) if c not in frame.columns]
    if missing:
        raise ActivityInputError(
            f"{path}: missing column(s) {missing}; found {list(frame.columns)}"
        )
    ids = frame[TREATMENT].str.strip()
    smiles = frame[SMILES].str.strip()
    empty = np.flatnonzero(ids.to_numpy() == "")
    if len(empty):
        raise ActivityInputError(f"{path} line {_line(empty[0])}: empty {TREATMENT}")
    duplicated = ids.duplicated(keep="first").to_numpy()
    if duplicated.any():
        first = int(np.flatnonzero(duplicated)[0])
        earlier = int(np.flatnonzero(ids.to_numpy() == ids.iloc[first])[0])
        raise ActivityInputError(
            f"{path} line {_line(first)}: duplicate compound {ids.iloc[first]!r} "
            f"(also on line {_line(earlier)})"
        )
    controls = smiles.to_numpy() == ""
    RDLogger.DisableLog("rdApp.*")
    try:
        for position in np.flatnonzero(~controls):
            if Chem.MolFromSmiles(smiles.iloc[position]) is None:
                raise ActivityInputError(
                    f"{path} line {_line(position)}: RDKit cannot parse the SMILES "
                    f"{smiles.iloc[position]!r} of {ids.iloc[position]!r}"
                )
    finally:
        RDLogger.EnableLog("rdApp.*")
    out = pd.DataFrame({SMILES: smiles.to_numpy()[~controls]}, index=ids.to_numpy()[~controls])
    out.index.name = TREATMENT
    return out, [str(t) for t in ids.to_numpy()[controls]]


def assay_file(root: str | Path) -> Path:
    """The assay matrix of a folder: ``assays.parquet`` or ``assays.csv``.

    Raises:
        FileNotFoundError: Neither exists.
        ActivityInputError: Both exist (which one is meant is not ours to guess).
    """
    root = Path(root)
    found = [root / n for n in ("assays.parquet", "assays.csv") if (root / n).is_file()]
    if len(found) == 2:
        raise ActivityInputError(
            f"{root} holds both assays.parquet and assays.csv: keep one (they may differ)"
        )
    if found:
        return found[0]
    raise FileNotFoundError(f"no assays.csv or assays.parquet in {root}")


def read_assays(path: str | Path) -> pd.DataFrame:
    """Read an assay matrix: ``Metadata_Treatment`` + one column per assay (1 / 0 / empty).

    Args:
        path: ``assays.csv`` or ``assays.parquet``.

    Returns:
        Float32 frame, index ``Metadata_Treatment``, one column per assay, values 1.0, 0.0 or
        NaN (not measured). Other ``Metadata_`` columns are dropped.

    Raises:
        FileNotFoundError: No file.
        ActivityInputError: Missing ``Metadata_Treatment``, no assay column, an empty or
            duplicated treatment id, or a value other than 0 / 1 / empty (file, line/row and
            column named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"assay file not found: {path}")
    is_csv = path.suffix.lower() != ".parquet"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False) if is_csv else pd.read_parquet(path)
    if TREATMENT not in frame.columns:
        raise ActivityInputError(f"{path}: missing column {TREATMENT}")
    ids = frame[TREATMENT].astype(str).str.strip()
    assays = [c for c in frame.columns if not str(c).startswith("Metadata_")]
    if not assays:
        raise ActivityInputError(f"{path}: no assay column (every column starts with Metadata_)")
    empty = np.flatnonzero(ids.to_numpy() == "")
    if len(empty):
        raise ActivityInputError(f"{_where(str(path), empty[0], is_csv)}: empty {TREATMENT}")
    duplicated = ids.duplicated().to_numpy()
    if duplicated.any():
        first = int(np.flatnonzero(duplicated)[0])
        raise ActivityInputError(
            f"{_where(str(path), first, is_csv)}: treatment {ids.iloc[first]!r} appears twice"
        )
    values = np.full((len(frame), len(assays)), np.nan, dtype=np.float32)
    for j, assay in enumerate(assays):
        column = frame[assay]
        if is_csv:
            text = column.astype(str).str.strip()
            ok = text.isin(["0", "1", "0.0", "1.0", ""])
            parsed = pd.to_numeric(text.where(text != "", None), errors="coerce")
        else:
            parsed = pd.to_numeric(column, errors="coerce")
            ok = (parsed.isin([0, 1]) | column.isna()).to_numpy()
        bad = np.flatnonzero(~np.asarray(ok))
        if len(bad):
            raise ActivityInputError(
                f"{_where(str(path), bad[0], is_csv)}, column {assay!r}: value "
                f"{column.iloc[bad[0]]!r} is not 0, 1 or empty"
            )
        values[:, j] = parsed.to_numpy(dtype=np.float32, na_value=np.nan)
    out = pd.DataFrame(values, index=ids.to_numpy(), columns=[str(a) for a in assays])
    out.index.name = TREATMENT
    return out


def drop_nonfinite_profiles(
    frame: pd.DataFrame, name: str
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Apply morphoflow's one non-finite rule (:func:`morphoflow.profiling.nonfinite.drop_nonfinite`)
    to a treatment-level profile table, with one :class:`ActivityInputWarning` naming what went.

    The rule: a treatment whose share of non-finite features is above 0.5 is dropped, then every
    feature still non-finite anywhere is dropped.

    Args:
        frame: ``Metadata_Treatment`` + numeric features.
        name: The table's name in messages (file path or modality).

    Returns:
        ``(clean, dropped_features, dropped_treatments)``.

    Raises:
        ValueError: Every row is non-finite (the message names the table).
    """
    from morphoflow.profiling.nonfinite import drop_nonfinite

    clean, report = drop_nonfinite(frame, name=name, warn=False)
    features = [str(c) for c in report.dropped_features]
    rows = (
        report.dropped_rows[TREATMENT].astype(str).tolist()
        if TREATMENT in report.dropped_rows.columns
        else []
    )
    if features or rows:
        shown = ", ".join(features[:10]) + (
            f" (+{len(features) - 10} more)" if len(features) > 10 else ""
        )
        warnings.warn(
            f"{name}: NaN/inf values (morphoflow.profiling.nonfinite): dropped "
            f"{len(features)} feature(s){': ' + shown if features else ''} and "
            f"{len(rows)} mostly non-finite treatment(s){': ' + str(rows[:10]) if rows else ''}",
            ActivityInputWarning,
            stacklevel=2,
        )
    return clean, features, rows


def read_profiles(
    profiles: pd.DataFrame, name: str
) -> tuple[pd.DataFrame, pd.Series | None, list[str]]:
    """Treatment-level profiles -> features per treatment (+ mean cells per well).

    Args:
        profiles: ``Metadata_Treatment`` + features (+ optional ``Metadata_ControlType``,
            ``Metadata_CellCount`` / ``Metadata_WellCount`` or ``Metadata_CellsPerWell``).
        name: Source named in errors (file path or modality).

    Returns:
        ``(features, cells_per_well, dropped_features)``: float32 features indexed by
        treatment (negative controls removed; non-finite values handled by
        :func:`drop_nonfinite_profiles`: mostly non-finite treatments, then non-finite
        columns dropped), the mean cells per well (None when the table has no counts), the
        dropped column names.

    Raises:
        ActivityInputError: Missing ``Metadata_Treatment``, duplicated treatments, a
            non-numeric feature column, or no finite feature left.
    """
    if TREATMENT not in profiles.columns:
        raise ActivityInputError(f"{name}: missing column {TREATMENT}")
    frame = profiles
    if CONTROL_TYPE in frame.columns:
        frame = frame[frame[CONTROL_TYPE].fillna("").astype(str) != "negcon"]
    ids = frame[TREATMENT].astype(str)
    duplicated = ids.duplicated().to_numpy()
    if duplicated.any():
        raise ActivityInputError(
            f"{name}: treatment {ids.iloc[int(np.flatnonzero(duplicated)[0])]!r} has more than "
            "one row (treatment-level profiles expected: one row per treatment)"
        )
    feature_cols = [c for c in frame.columns if not str(c).startswith("Metadata_")]
    non_numeric = [c for c in feature_cols if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise ActivityInputError(f"{name}: non-numeric feature column(s) {non_numeric[:5]}")
    if not feature_cols:
        raise ActivityInputError(f"{name}: no feature column (every column starts with Metadata_)")
    frame, dropped, _ = drop_nonfinite_profiles(frame, name)
    ids = frame[TREATMENT].astype(str)
    feature_cols = [c for c in frame.columns if not str(c).startswith("Metadata_")]
    if not feature_cols:
        raise ActivityInputError(f"{name}: no finite feature column")
    features = frame[feature_cols].astype(np.float64)
    features.index = ids.to_numpy()
    features.index.name = TREATMENT
    cells = None
    if CELLS_PER_WELL in frame.columns:
        cells = pd.Series(frame[CELLS_PER_WELL].to_numpy(dtype=np.float64), index=ids.to_numpy())
    elif CELL_COUNT in frame.columns:
        wells = (
            frame[WELL_COUNT].to_numpy(dtype=np.float64)
            if WELL_COUNT in frame.columns
            else np.ones(len(frame))
        )
        cells = pd.Series(
            frame[CELL_COUNT].to_numpy(dtype=np.float64) / wells, index=ids.to_numpy()
        )
    return features.astype(np.float32), cells, dropped


def load_activity_data(
    compounds: pd.DataFrame,
    assays: pd.DataFrame,
    profiles: dict[str, pd.DataFrame | None],
    min_positives: int = 5,
    controls: list[str] | None = None,
    sources: dict[str, str] | None = None,
) -> ActivityData:
    """Align compounds, assays and profiles; drop what cannot be used, listed in the report.

    Rules: assay rows of treatments without SMILES (controls) are excluded; a treatment id in
    the assay file that is not in ``compounds.csv`` is an error; compounds missing from a
    modality's profiles are dropped from the whole run (every modality is scored on the same
    compounds) with a warning; assays with fewer than ``min_positives`` positives or negatives
    among the remaining compounds are dropped with a warning (an all-empty or single-class
    assay is such an assay).

    Args:
        compounds: From :func:`read_compounds`.
        assays: From :func:`read_assays`.
        profiles: Modality -> raw profile table (:func:`read_profiles` input) or None.
        min_positives: Minimum positives (and negatives) an assay needs.
        controls: Ids of the controls excluded from ``compounds.csv`` (their assay rows are
            excluded too; counted in the report).
        sources: Names of the files (keys ``compounds``, ``assays``, modality names) for
            messages.

    Returns:
        The :class:`ActivityData`.

    Raises:
        ActivityInputError: Unknown treatment ids in the assay file, no assay left, or no
            labelled compound left.
    """
    sources = sources or {}
    if int(min_positives) < 1:
        raise ActivityInputError(f"min_positives must be >= 1, got {min_positives!r}")
    messages: list[str] = []

    def warn(message: str) -> None:
        messages.append(message)
        warnings.warn(message, ActivityInputWarning, stacklevel=3)

    assay_name = sources.get("assays", "assay file")
    control_ids = set(controls or [])
    unknown = [t for t in assays.index if t not in compounds.index and t not in control_ids]
    if unknown:
        raise ActivityInputError(
            f"{assay_name}: {len(unknown)} treatment id(s) not in {sources.get('compounds', 'compounds.csv')}: "
            f"{unknown[:10]}"
        )
    labels = assays.loc[[t for t in assays.index if t in compounds.index]]
    n_control_rows = len(assays) - len(labels)

    features: dict[str, pd.DataFrame] = {}
    dropped_features: dict[str, list[str]] = {}
    cells = None
    dropped_compounds: dict[str, list[str]] = {}
    keep = pd.Index(compounds.index)
    for modality, table in profiles.items():
        if table is None:
            continue
        name = sources.get(modality, f"{modality} profiles")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ActivityInputWarning)
            feats, counts, dropped = read_profiles(table, name)
        for w in caught:
            warn(str(w.message))
        features[modality] = feats
        dropped_features[modality] = dropped
        if modality == "mo":
            cells = counts
        missing = [t for t in keep if t not in feats.index]
        if missing and len(missing) == len(keep):
            raise ActivityInputError(
                f"{name}: none of its {len(feats)} Metadata_Treatment ids matches a compound "
                f"of {sources.get('compounds', 'compounds.csv')} (e.g. profile "
                f"{[str(t) for t in feats.index[:3]]} vs compound {[str(t) for t in keep[:3]]})"
            )
        if missing:
            dropped_compounds[f"no {modality} profile"] = missing
            warn(
                f"{name}: {len(missing)} compound(s) have no profile and are left out: {missing[:10]}"
            )
            keep = keep[~keep.isin(missing)]
    compounds = compounds.loc[keep]
    labels = labels.loc[labels.index.isin(keep)]
    labels = labels.loc[labels.notna().any(axis=1)]
    features = {m: f.loc[keep] for m, f in features.items()}
    if cells is not None:
        cells = cells.loc[keep]

    dropped_assays: dict[str, str] = {}
    for assay in labels.columns:
        column = labels[assay]
        pos, neg = int((column == 1).sum()), int((column == 0).sum())
        if pos < min_positives or neg < min_positives:
            reason = (
                "no measured value"
                if pos + neg == 0
                else f"{pos} positive(s), {neg} negative(s) (< min_positives={min_positives})"
            )
            dropped_assays[str(assay)] = reason
    if dropped_assays:
        warn(
            f"{assay_name}: {len(dropped_assays)} assay(s) dropped: "
            + "; ".join(f"{a}: {r}" for a, r in list(dropped_assays.items())[:10])
        )
    labels = labels.drop(columns=list(dropped_assays))
    labels = labels.loc[labels.notna().any(axis=1)]
    if labels.shape[1] == 0:
        raise ActivityInputError(
            f"{assay_name}: no assay has >= {min_positives} positives and negatives among the "
            f"{len(compounds)} usable compounds ({len(dropped_assays)} dropped: "
            + "; ".join(f"{a}: {r}" for a, r in list(dropped_assays.items())[:5])
            + ")"
        )
    report = {
        "n_compounds": int(len(compounds)),
        "n_labelled": int(len(labels)),
        "n_unlabelled": int(len(compounds) - len(labels)),
        "n_assays": int(labels.shape[1]),
        "n_controls_excluded": len(control_ids),
        "n_control_assay_rows_excluded": int(n_control_rows),
        "dropped_assays": dropped_assays,
        "dropped_features": dropped_features,
        "dropped_compounds": dropped_compounds,
        "nonfinite_handling": "morphoflow.profiling.nonfinite.drop_nonfinite (treatments with "
        "> 50 % non-finite features dropped, then non-finite features)",
        "warnings": messages,
    }
    return ActivityData(compounds, labels.astype(np.float32), features, cells, report)
