"""Aggregation of profiles: single cells -> site median -> well mean -> treatment mean.

Profile tables follow the pycytominer convention: columns whose name starts with ``Metadata_``
are metadata, every other column is a numeric feature. Each level groups the rows of the level
below by its *strata* and aggregates the features:

========== ============================================== ========= ===========================
level      strata                                         operation counts
========== ============================================== ========= ===========================
site       Source, Plate, Well, Site                      median    ``Metadata_CellCount``
well       Source, Plate, Well                            mean      ``Metadata_SiteCount``,
                                                                    ``Metadata_CellCount`` (sum)
treatment  Treatment                                      mean      ``Metadata_WellCount``,
                                                                    ``Metadata_CellCount`` (sum)
========== ============================================== ========= ===========================

Other metadata columns are carried to the aggregate when they are constant within every group
(treatment, MoA and control type at well level) and dropped otherwise (a column that varies in
even one group is dropped for all). Feature aggregation skips NaN, like pandas. Rows come out
sorted by the strata, so the result does not depend on the input row order.

:class:`SiteMedianAccumulator` builds the site table one site (or one batch of whole sites) at a
time, so that single-cell tables of a screen never have to sit in memory together.

Example:
    >>> import pandas as pd
    >>> cells = pd.DataFrame({"Metadata_Well": ["A01", "A01", "A01", "B01"],
    ...                       "Cells_Area": [1.0, 5.0, 3.0, 7.0]})
    >>> aggregate(cells, ["Metadata_Well"], "median", count_column="Metadata_CellCount")
      Metadata_Well  Metadata_CellCount  Cells_Area
    0           A01                   3         3.0
    1           B01                   1         7.0
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd

METADATA_PREFIX = "Metadata_"

#: Strata of a site profile (one row per imaged site).
SITE_STRATA: tuple[str, ...] = (
    "Metadata_Source",
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_Site",
)
#: Strata of a well profile.
WELL_STRATA: tuple[str, ...] = ("Metadata_Source", "Metadata_Plate", "Metadata_Well")
#: Strata of a treatment profile.
TREATMENT_STRATA: tuple[str, ...] = ("Metadata_Treatment",)

CELL_COUNT = "Metadata_CellCount"
SITE_COUNT = "Metadata_SiteCount"
WELL_COUNT = "Metadata_WellCount"

Operation = Literal["median", "mean"]
_OPERATIONS: tuple[str, ...] = ("median", "mean")


def metadata_columns(df: pd.DataFrame) -> list[str]:
    """Return the metadata columns of a profile table (names starting with ``Metadata_``).

    Args:
        df: A single-cell or profile table.

    Returns:
        The metadata column names, in table order.
    """
    return [str(c) for c in df.columns if str(c).startswith(METADATA_PREFIX)]


def feature_columns(df: pd.DataFrame) -> list[str]:
    """Return the feature columns of a profile table (every column not prefixed ``Metadata_``).

    Args:
        df: A single-cell or profile table.

    Returns:
        The feature column names, in table order.
    """
    return [str(c) for c in df.columns if not str(c).startswith(METADATA_PREFIX)]


def _check_features(df: pd.DataFrame, features: Sequence[str], name: str) -> None:
    bad = [c for c in features if not pd.api.types.is_numeric_dtype(df[c].dtype)]
    if bad:
        raise ValueError(
            f"{name}: feature columns must be numeric (metadata columns need the "
            f"'{METADATA_PREFIX}' prefix); not numeric: {bad[:10]}"
        )


def _check_strata(df: pd.DataFrame, strata: Sequence[str], name: str) -> list[str]:
    strata = list(strata)
    if not strata:
        raise ValueError("strata must name at least one column")
    if len(set(strata)) != len(strata):
        raise ValueError(f"strata has duplicate columns: {strata}")
    missing = [c for c in strata if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks the strata columns {missing}")
    not_meta = [c for c in strata if not c.startswith(METADATA_PREFIX)]
    if not_meta:
        raise ValueError(f"strata must be metadata columns ('{METADATA_PREFIX}*'): {not_meta}")
    return strata


def _sort_by(df: pd.DataFrame, strata: Sequence[str]) -> pd.DataFrame:
    return df.sort_values(list(strata), kind="mergesort", na_position="last").reset_index(drop=True)


def aggregate(
    df: pd.DataFrame,
    strata: Sequence[str],
    operation: Operation = "median",
    count_column: str | None = None,
    *,
    sum_columns: Sequence[str] = (),
) -> pd.DataFrame:
    """Aggregate the feature columns of a profile table per group of rows.

    Args:
        df: Profile table (``Metadata_*`` columns and numeric features), at least one row.
        strata: Metadata columns that define a group (one output row per distinct combination;
            missing values form their own group).
        operation: ``"median"`` or ``"mean"`` of each feature over the group's rows (NaN
            skipped; a feature that is NaN on every row of a group stays NaN).
        count_column: If given, a ``Metadata_*`` column added with the number of rows per group.
        sum_columns: Numeric metadata columns (e.g. ``Metadata_CellCount`` of the level below)
            summed per group instead of being carried.

    Returns:
        One row per group, sorted by ``strata``: the strata, the other metadata columns that are
        constant within every group (in ``df`` order), ``count_column``, ``sum_columns`` and the
        features (in ``df`` order). Metadata columns that vary within any group are dropped.

    Raises:
        ValueError: If ``df`` is empty, ``strata``/``sum_columns`` are missing, ``operation`` is
            unknown, ``count_column`` lacks the ``Metadata_`` prefix or already exists, or a
            feature column is not numeric.
    """
    if operation not in _OPERATIONS:
        raise ValueError(f"operation must be one of {_OPERATIONS}, got {operation!r}")
    if len(df) == 0:
        raise ValueError("df has no rows to aggregate")
    strata = _check_strata(df, strata, "df")
    sums = list(sum_columns)
    missing_sums = [c for c in sums if c not in df.columns]
    if missing_sums:
        raise ValueError(f"sum_columns not in df: {missing_sums}")
    if count_column is not None:
        if not count_column.startswith(METADATA_PREFIX):
            raise ValueError(
                f"count_column must start with '{METADATA_PREFIX}' (else it reads as a "
                f"feature), got {count_column!r}"
            )
        if count_column in df.columns and count_column not in sums:
            raise ValueError(f"count_column {count_column!r} is already a column of df")
        if count_column in sums:
            raise ValueError(f"count_column {count_column!r} is also in sum_columns")
    features = feature_columns(df)
    _check_features(df, features, "df")

    grouped = df.groupby(strata, sort=False, dropna=False, observed=True)
    counts = grouped.size()  # one entry per group, in the groups' order of appearance
    out = counts.index.to_frame(index=False)
    out.columns = strata

    others = [c for c in metadata_columns(df) if c not in strata and c not in sums]
    if others:
        distinct = grouped[others].nunique(dropna=False)
        for c in others:
            if bool((distinct[c] <= 1).all()):
                out[c] = grouped[c].first().to_numpy()  # constant (or all-NaN) per group
    if count_column is not None:
        out[count_column] = counts.to_numpy().astype("int64")
    for c in sums:
        out[c] = grouped[c].sum().to_numpy()
    if features:
        values = getattr(grouped[features], operation)()
        out = pd.concat(
            [out, pd.DataFrame(values.to_numpy(dtype="float64"), columns=features)], axis=1
        )
    return _sort_by(out, strata)


def _require(df: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks the columns {missing}")


def site_profiles(cells: pd.DataFrame) -> pd.DataFrame:
    """Median of the single-cell features per site, with ``Metadata_CellCount``.

    Args:
        cells: Single-cell table with the :data:`SITE_STRATA` columns.

    Returns:
        One row per site, sorted by :data:`SITE_STRATA`.

    Raises:
        ValueError: If ``cells`` is empty or lacks a strata column.
    """
    _require(cells, SITE_STRATA, "cells")
    return aggregate(cells, list(SITE_STRATA), "median", count_column=CELL_COUNT)


def well_profiles(sites: pd.DataFrame) -> pd.DataFrame:
    """Mean of the site profiles per well (every site weighs the same).

    Args:
        sites: Site profiles (:func:`site_profiles`) with the :data:`WELL_STRATA` columns.

    Returns:
        One row per well, sorted by :data:`WELL_STRATA`, with ``Metadata_SiteCount`` and, when
        ``sites`` has it, ``Metadata_CellCount`` summed over the sites. ``Metadata_Site`` is
        dropped.

    Raises:
        ValueError: If ``sites`` is empty or lacks a strata column.
    """
    _require(sites, WELL_STRATA, "sites")
    sums = [CELL_COUNT] if CELL_COUNT in sites.columns else []
    frame = sites.drop(columns=[c for c in ("Metadata_Site",) if c in sites.columns])
    return aggregate(frame, list(WELL_STRATA), "mean", count_column=SITE_COUNT, sum_columns=sums)


def treatment_profiles(wells: pd.DataFrame) -> pd.DataFrame:
    """Mean of the well profiles per treatment (every well weighs the same).

    Args:
        wells: Well profiles (normally after batch correction) with ``Metadata_Treatment``,
            ``Metadata_MoA`` and ``Metadata_ControlType``.

    Returns:
        One row per treatment, sorted by treatment, with ``Metadata_MoA``,
        ``Metadata_ControlType``, ``Metadata_WellCount`` and the sums of ``Metadata_CellCount``
        and ``Metadata_SiteCount`` when ``wells`` has them. The position columns
        (:data:`SITE_STRATA`: source, plate, well, site) are always dropped, so the columns do
        not depend on the plate layout; other metadata follows the rule of :func:`aggregate`.

    Raises:
        ValueError: If ``wells`` is empty, lacks a column, or a treatment has wells with two
            MoAs or two control types (the message names the treatment).
    """
    treatment, moa, control = "Metadata_Treatment", "Metadata_MoA", "Metadata_ControlType"
    _require(wells, [treatment, moa, control], "wells")
    for column in (moa, control):
        distinct = wells.groupby(treatment, dropna=False, sort=True)[column].nunique(dropna=False)
        conflicting = distinct[distinct > 1]
        if len(conflicting):
            name = conflicting.index[0]
            values = sorted(map(str, wells.loc[wells[treatment] == name, column].unique()))
            raise ValueError(
                f"wells: treatment {name!r} has more than one {column}: {values}"
                + (f" (and {len(conflicting) - 1} more treatments)" if len(conflicting) > 1 else "")
            )
    sums = [c for c in (CELL_COUNT, SITE_COUNT) if c in wells.columns]
    frame = wells.drop(columns=[c for c in SITE_STRATA if c in wells.columns])
    return aggregate(
        frame, list(TREATMENT_STRATA), "mean", count_column=WELL_COUNT, sum_columns=sums
    )


class SiteMedianAccumulator:
    """Build the site profile table one site (or one batch of whole sites) at a time.

    Only the site-level rows are kept, so memory grows with the number of sites, not cells.
    The median cannot be merged across parts, so all cells of a site must come in one call;
    adding a site that was already added raises. :meth:`result` equals :func:`site_profiles`
    (or :func:`aggregate` with the same strata) on the concatenation of everything added.

    Example:
        >>> import numpy as np
        >>> acc = SiteMedianAccumulator()
        >>> site = {"Metadata_Source": "s", "Metadata_Plate": "p", "Metadata_Well": "A01",
        ...         "Metadata_Site": 1}
        >>> acc.add_site(site, np.array([[1.0], [3.0], [8.0]]), ["f"])
        >>> acc.result()[["Metadata_CellCount", "f"]].to_numpy().tolist()
        [[3.0, 3.0]]

    Args:
        strata: Columns that identify a site.
        count_column: Name of the per-site cell count column.
    """

    def __init__(self, strata: Sequence[str] = SITE_STRATA, count_column: str = CELL_COUNT) -> None:
        if not list(strata):
            raise ValueError("strata must name at least one column")
        if not count_column.startswith(METADATA_PREFIX):
            raise ValueError(f"count_column must start with '{METADATA_PREFIX}'")
        self.strata = list(strata)
        self.count_column = count_column
        self._meta: list[pd.DataFrame] = []  # per part: strata, carried metadata, count
        self._values: list[np.ndarray] = []  # per part: (n_sites, n_features) medians
        self._seen: set[tuple[object, ...]] = set()
        self._features: list[str] | None = None
        self._columns: list[str] | None = None  # metadata columns carried by every part

    @property
    def n_sites(self) -> int:
        """Number of sites added so far."""
        return len(self._seen)

    def add(self, cells: pd.DataFrame) -> None:
        """Add the single cells of one or more whole sites.

        Args:
            cells: Single-cell table with the strata columns; every site in it must be complete
                and not added before. An empty table is ignored (a site without cells has no
                profile, as in :func:`site_profiles`).

        Raises:
            ValueError: If a strata column is missing, a site was already added, or the feature
                columns differ from those of earlier calls.
        """
        if len(cells) == 0:
            return
        _check_strata(cells, self.strata, "cells")
        part = aggregate(cells, self.strata, "median", count_column=self.count_column)
        features = feature_columns(cells)
        self._store(
            part.drop(columns=features), part[features].to_numpy(np.float64), features, "cells"
        )

    def add_site(
        self,
        metadata: Mapping[str, object],
        features: np.ndarray,
        feature_names: Sequence[str],
    ) -> None:
        """Add one site from a feature array (e.g. straight from a feature extractor).

        Args:
            metadata: ``Metadata_*`` values of the site; must include the strata.
            features: Array (n_cells, n_features); zero cells are ignored.
            feature_names: Names of the feature columns (no ``Metadata_`` prefix).

        Raises:
            ValueError: If the array shape and names disagree, a strata value or prefix is
                missing, the site was already added, or the features differ from earlier calls.
        """
        arr = np.asarray(features, dtype=np.float64)
        names = [str(n) for n in feature_names]
        if arr.ndim != 2 or arr.shape[1] != len(names):
            raise ValueError(
                f"features must be (n_cells, {len(names)}) to match feature_names, "
                f"got shape {arr.shape}"
            )
        if self._features is None:
            bad = [n for n in names if n.startswith(METADATA_PREFIX)]
            if bad:
                raise ValueError(
                    f"feature_names must not start with '{METADATA_PREFIX}': {bad[:5]}"
                )
        missing = [c for c in self.strata if c not in metadata]
        if missing:
            raise ValueError(f"metadata lacks the strata {missing}")
        not_meta = [k for k in metadata if not str(k).startswith(METADATA_PREFIX)]
        if not_meta:
            raise ValueError(f"metadata keys must start with '{METADATA_PREFIX}': {not_meta}")
        if arr.shape[0] == 0:
            return
        if np.isnan(arr).any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN feature -> NaN
                median = np.nanmedian(arr, axis=0)
        else:
            median = np.median(arr, axis=0)
        row: dict[str, list[object]] = {c: [metadata[c]] for c in self.strata}
        row.update({k: [v] for k, v in metadata.items() if k not in self.strata})
        row[self.count_column] = [arr.shape[0]]
        meta = pd.DataFrame(row)
        meta[self.count_column] = meta[self.count_column].astype("int64")
        self._store(meta, median[None, :], names, "features")

    def _store(
        self, meta: pd.DataFrame, values: np.ndarray, features: list[str], name: str
    ) -> None:
        keys = [tuple(k) for k in meta[self.strata].itertuples(index=False, name=None)]
        again = [k for k in keys if k in self._seen]
        if again:
            raise ValueError(
                f"{name}: site {again[0]} was already added (all cells of a site must come in "
                "one call: medians cannot be merged)"
            )
        if self._features is None:
            self._features = features
        elif features != self._features:
            raise ValueError(
                f"{name}: feature columns differ from the first site added "
                f"({len(features)} vs {len(self._features)} columns)"
            )
        carried = [str(c) for c in meta.columns if c not in self.strata]
        self._columns = (
            carried if self._columns is None else [c for c in self._columns if c in carried]
        )
        self._seen.update(keys)
        self._meta.append(meta)
        self._values.append(values)

    def result(self) -> pd.DataFrame:
        """Return the site profiles added so far, sorted by the strata.

        Returns:
            One row per site: strata, metadata carried by every site, count, features.

        Raises:
            ValueError: If no site was added.
        """
        if not self._meta or self._columns is None or self._features is None:
            raise ValueError("no site was added")
        columns = self.strata + self._columns  # carried columns in the first part's order
        meta = pd.concat([m[columns] for m in self._meta], ignore_index=True)
        meta[self.count_column] = meta[self.count_column].astype("int64")
        values = pd.DataFrame(np.concatenate(self._values), columns=self._features)
        return _sort_by(pd.concat([meta, values], axis=1), self.strata)
