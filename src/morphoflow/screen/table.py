"""Ingestion: a screen folder's tables -> the canonical image table (one row per site).

A *screen* is a folder holding

- ``load_data.csv`` -- CellProfiler LoadData style: ``Metadata_Plate``, ``Metadata_Well``,
  ``Metadata_Site``, and per channel ``FileName_Orig<Ch>`` + ``PathName_Orig<Ch>`` for
  Ch in DNA, ER, RNA, AGP, Mito. Optional: ``Metadata_Source`` (default: ``"default"``) and
  ``FileName_NucleiTruth`` + ``PathName_NucleiTruth`` (ground-truth nucleus labels).
  ``PathName_*`` are relative to the screen folder (or absolute inside it).
- ``platemap.csv`` -- ``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Treatment`` and
  optionally ``Metadata_ControlType`` (``negcon`` or empty). Without ``Metadata_Plate`` the
  layout applies to every plate.
- ``moa.csv`` (optional) -- ``Metadata_Treatment``, ``Metadata_MoA``.

or, instead of ``load_data.csv`` + ``platemap.csv``, a DeepProfiler ``index.csv`` (see
:func:`read_deepprofiler_index`).

The canonical table has the columns of :data:`~morphoflow.screen.constants.METADATA_COLUMNS`
plus ``Path_<Ch>`` (POSIX paths relative to the screen root) and, when given,
``Path_NucleiTruth``. Structural problems (missing columns, paths escaping the root, platemap
and images that do not join) raise :class:`ScreenFormatError` naming the file and lines; content
rules (well names, duplicates, files present, controls per plate) are checked by the
``data_validation`` pipeline so that every problem is reported at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import pandas as pd

from morphoflow.screen.constants import CHANNELS, METADATA_COLUMNS, PATH_COLUMNS, TRUTH_COLUMN
from morphoflow.screen.errors import ScreenFormatError

LOAD_DATA = "load_data.csv"
PLATEMAP = "platemap.csv"
MOA_TABLE = "moa.csv"
DEEPPROFILER_INDEX = "index.csv"

_MAX_LISTED = 10


def _line(index: int) -> int:
    """CSV line number of a zero-based data row (line 1 is the header)."""
    return int(index) + 2


def _list_lines(indices: Sequence[int]) -> str:
    lines = [str(_line(i)) for i in list(indices)[:_MAX_LISTED]]
    more = len(indices) - _MAX_LISTED
    return ", ".join(lines) + (f" and {more} more" if more > 0 else "")


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ScreenFormatError(f"screen table not found: {path}")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise ScreenFormatError(f"cannot parse CSV {path}: {exc}") from exc


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ScreenFormatError(
            f"{path} is missing required column(s) {missing}; it has {list(frame.columns)}"
        )


def _relative_to_root(value: str, root: Path, path: Path, index: int, column: str) -> str:
    """Return ``value`` as a POSIX path relative to ``root``; refuse paths that escape it."""
    if not value:
        raise ScreenFormatError(f"{path} line {_line(index)}: empty {column}")
    candidate = Path(value)
    absolute = candidate if candidate.is_absolute() else root / candidate
    resolved = absolute.resolve()
    try:
        relative = resolved.relative_to(root.resolve())
    except ValueError:
        raise ScreenFormatError(
            f"{path} line {_line(index)}: {column} {value!r} escapes the data root {root}"
        ) from None
    return PurePosixPath(*relative.parts).as_posix()


def _parse_sites(frame: pd.DataFrame, path: Path) -> pd.Series:
    sites = pd.to_numeric(frame["Metadata_Site"], errors="coerce")
    bad = frame.index[sites.isna() | (sites % 1 != 0)]
    if len(bad):
        raise ScreenFormatError(
            f"{path}: Metadata_Site is not an integer on line(s) {_list_lines(bad)}"
        )
    return sites.astype("int64")


def read_load_data(path: str | Path, root: str | Path | None = None) -> pd.DataFrame:
    """Read a CellProfiler ``load_data.csv`` into site rows with ``Path_<Ch>`` columns.

    Args:
        path: The CSV file.
        root: Screen root the paths are relative to (default: the CSV's folder).

    Returns:
        DataFrame with ``Metadata_Source/Plate/Well/Site`` and ``Path_<Ch>`` columns (and
        ``Path_NucleiTruth`` when the file names ground-truth masks).

    Raises:
        ScreenFormatError: Missing columns, non-integer sites, or a path outside ``root``.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    frame = _read_csv(path)
    required = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]
    for channel in CHANNELS:
        required += [f"FileName_Orig{channel}", f"PathName_Orig{channel}"]
    _require_columns(frame, required, path)

    out = pd.DataFrame(
        {
            "Metadata_Source": frame.get("Metadata_Source", pd.Series("default", frame.index)),
            "Metadata_Plate": frame["Metadata_Plate"],
            "Metadata_Well": frame["Metadata_Well"],
            "Metadata_Site": _parse_sites(frame, path),
        }
    )
    pairs = [(f"Path_{c}", f"FileName_Orig{c}", f"PathName_Orig{c}") for c in CHANNELS]
    if "FileName_NucleiTruth" in frame.columns and "PathName_NucleiTruth" in frame.columns:
        pairs.append((TRUTH_COLUMN, "FileName_NucleiTruth", "PathName_NucleiTruth"))
    for target, file_col, dir_col in pairs:
        values = []
        for index, (name, folder) in enumerate(zip(frame[file_col], frame[dir_col], strict=True)):
            if not name:
                raise ScreenFormatError(f"{path} line {_line(index)}: empty {file_col}")
            joined = f"{folder.rstrip('/')}/{name}" if folder else name
            values.append(_relative_to_root(joined, root, path, index, f"{dir_col}/{file_col}"))
        out[target] = values
    return out


def read_platemap(path: str | Path) -> pd.DataFrame:
    """Read a platemap (plate, well -> treatment, control type).

    Raises:
        ScreenFormatError: Missing columns, an empty treatment, or an unknown control type.
    """
    path = Path(path)
    frame = _read_csv(path)
    _require_columns(frame, ["Metadata_Well", "Metadata_Treatment"], path)
    if "Metadata_ControlType" not in frame.columns:
        frame["Metadata_ControlType"] = ""
    empty = frame.index[frame["Metadata_Treatment"].str.strip() == ""]
    if len(empty):
        raise ScreenFormatError(f"{path}: empty Metadata_Treatment on line(s) {_list_lines(empty)}")
    keys = ["Metadata_Plate", "Metadata_Well"] if "Metadata_Plate" in frame else ["Metadata_Well"]
    duplicated = frame.index[frame.duplicated(keys, keep=False)]
    if len(duplicated):
        raise ScreenFormatError(
            f"{path}: the same {'/'.join(keys)} appears twice, line(s) {_list_lines(duplicated)}"
        )
    columns = keys + ["Metadata_Treatment", "Metadata_ControlType"]
    return frame[columns].reset_index(drop=True)


def read_moa_table(path: str | Path) -> pd.DataFrame:
    """Read the treatment -> MoA table (``Metadata_Treatment``, ``Metadata_MoA``)."""
    path = Path(path)
    frame = _read_csv(path)
    _require_columns(frame, ["Metadata_Treatment", "Metadata_MoA"], path)
    duplicated = frame.index[frame.duplicated("Metadata_Treatment", keep=False)]
    if len(duplicated):
        raise ScreenFormatError(
            f"{path}: treatment listed twice on line(s) {_list_lines(duplicated)}"
        )
    return frame[["Metadata_Treatment", "Metadata_MoA"]]


def join_platemap(
    sites: pd.DataFrame,
    platemap: pd.DataFrame,
    moa: pd.DataFrame | None,
    sites_name: str = LOAD_DATA,
    platemap_name: str = PLATEMAP,
) -> pd.DataFrame:
    """Attach treatment, control type and MoA to site rows; refuse rows that do not join.

    Raises:
        ScreenFormatError: A site has no platemap entry, or a platemap well has no images.
    """
    keys = [k for k in ("Metadata_Plate", "Metadata_Well") if k in platemap.columns]
    merged = sites.merge(platemap, on=keys, how="left", indicator=True, validate="many_to_one")
    orphan_sites = merged.index[merged["_merge"] == "left_only"]
    if len(orphan_sites):
        example = merged.loc[orphan_sites[0], keys].to_dict()
        raise ScreenFormatError(
            f"{sites_name}: {len(orphan_sites)} site(s) have no entry in {platemap_name} "
            f"(line(s) {_list_lines(orphan_sites)}; first: {example})"
        )
    if "Metadata_Plate" in keys:
        used = platemap.merge(sites[keys].drop_duplicates(), on=keys, how="left", indicator=True)
        empty = used.index[used["_merge"] == "left_only"]
        if len(empty):
            first = used.loc[empty[0], keys].to_dict()
            raise ScreenFormatError(
                f"{platemap_name}: {len(empty)} well(s) have no images in {sites_name} "
                f"(line(s) {_list_lines(empty)}; first: {first})"
            )
    merged = merged.drop(columns="_merge")
    if moa is not None:
        merged = merged.merge(moa, on="Metadata_Treatment", how="left")
    if "Metadata_MoA" not in merged.columns:
        merged["Metadata_MoA"] = ""
    merged["Metadata_MoA"] = merged["Metadata_MoA"].fillna("")
    return merged


def _canonical_order(table: pd.DataFrame) -> pd.DataFrame:
    columns = list(METADATA_COLUMNS) + list(PATH_COLUMNS)
    if TRUTH_COLUMN in table.columns:
        columns.append(TRUTH_COLUMN)
    table = table[columns].copy()
    for column in METADATA_COLUMNS:
        if column != "Metadata_Site":
            table[column] = table[column].astype(str)
    return table.reset_index(drop=True)


def read_deepprofiler_index(
    path: str | Path,
    root: str | Path | None = None,
    treatment_column: str = "Treatment",
    control_values: Sequence[str] = ("DMSO",),
    moa: pd.DataFrame | None = None,
    channel_columns: Sequence[str] = CHANNELS,
) -> pd.DataFrame:
    """Read a DeepProfiler ``index.csv`` into the canonical image table.

    DeepProfiler's index has one row per site: ``Metadata_Plate``, ``Metadata_Well``,
    ``Metadata_Site``, one column per channel holding the image path relative to the image
    folder, a treatment column (its name is DeepProfiler's ``label_field``) and usually
    ``Replicate``. Rows whose treatment is in ``control_values`` become negative controls.

    Args:
        path: The index CSV.
        root: Image folder the channel paths are relative to (default: the CSV's folder).
        treatment_column: Column holding the treatment.
        control_values: Treatments that are negative controls.
        moa: Optional treatment -> MoA table (a ``Metadata_MoA`` column in the index wins).
        channel_columns: Channel columns, in canonical order (DNA, ER, RNA, AGP, Mito).

    Returns:
        The canonical image table.

    Raises:
        ScreenFormatError: Missing columns or a path outside ``root``.
    """
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    if len(channel_columns) != len(CHANNELS):
        raise ScreenFormatError(
            f"channel_columns must name {len(CHANNELS)} columns ({', '.join(CHANNELS)}), "
            f"got {list(channel_columns)}"
        )
    frame = _read_csv(path)
    required = ["Metadata_Plate", "Metadata_Well", "Metadata_Site", treatment_column]
    _require_columns(frame, required + list(channel_columns), path)
    table = pd.DataFrame(
        {
            "Metadata_Source": frame.get("Metadata_Source", pd.Series("default", frame.index)),
            "Metadata_Plate": frame["Metadata_Plate"],
            "Metadata_Well": frame["Metadata_Well"],
            "Metadata_Site": _parse_sites(frame, path),
            "Metadata_Treatment": frame[treatment_column],
        }
    )
    table["Metadata_ControlType"] = [
        "negcon" if t in set(control_values) else "" for t in table["Metadata_Treatment"]
    ]
    if "Metadata_MoA" in frame.columns:
        table["Metadata_MoA"] = frame["Metadata_MoA"]
    elif moa is not None:
        table = table.merge(moa, on="Metadata_Treatment", how="left")
    else:
        table["Metadata_MoA"] = ""
    table["Metadata_MoA"] = table["Metadata_MoA"].fillna("")
    for channel, column in zip(CHANNELS, channel_columns, strict=True):
        table[f"Path_{channel}"] = [
            _relative_to_root(v, root, path, i, column) for i, v in enumerate(frame[column])
        ]
    return _canonical_order(table)


def load_screen(root: str | Path) -> pd.DataFrame:
    """Load a screen folder into the canonical image table.

    Uses ``load_data.csv`` + ``platemap.csv`` (+ ``moa.csv`` if present) when the folder has a
    ``load_data.csv``, otherwise a DeepProfiler ``index.csv``.

    Args:
        root: The screen folder.

    Returns:
        The canonical image table, one row per site.

    Raises:
        ScreenFormatError: The folder or a table is missing or malformed, or does not join.
    """
    root = Path(root)
    if not root.is_dir():
        raise ScreenFormatError(
            f"screen folder not found: {root} (generate the demo with "
            "`morphoflow simulate-screen --out DIR` or pass screen.root=DIR)"
        )
    moa = read_moa_table(root / MOA_TABLE) if (root / MOA_TABLE).is_file() else None
    if (root / LOAD_DATA).is_file():
        sites = read_load_data(root / LOAD_DATA, root)
        platemap = read_platemap(root / PLATEMAP)
        table = join_platemap(sites, platemap, moa, str(root / LOAD_DATA), str(root / PLATEMAP))
        return _canonical_order(table)
    if (root / DEEPPROFILER_INDEX).is_file():
        return read_deepprofiler_index(root / DEEPPROFILER_INDEX, root, moa=moa)
    raise ScreenFormatError(
        f"{root} holds neither {LOAD_DATA} (+ {PLATEMAP}) nor a DeepProfiler {DEEPPROFILER_INDEX}"
    )


def annotation_rows(root: str | Path) -> pd.DataFrame:
    """Cross-check of the annotation tables: every treatment against every ``moa.csv`` row.

    A mistyped treatment name in ``moa.csv`` used to pass silently: the platemap treatment got
    no MoA and the ``moa.csv`` row matched nothing. This lists, one row each,

    - every ``moa.csv`` row (``Check_Matched``: its treatment is in the platemap / index), and
    - every non-control platemap treatment (``Check_Matched``: it has a ``moa.csv`` row),

    with ``Check_Where`` saying where it comes from (``moa.csv line N`` / ``platemap.csv line
    N``) and ``Check_Suggestion`` the closest name on the other side (difflib), so a
    validation suite can list every mismatch with its line.

    Args:
        root: The screen folder.

    Returns:
        Columns ``Metadata_Treatment``, ``Check_Where``, ``Check_Matched`` (bool),
        ``Check_Suggestion`` (str, may be empty); no rows when the screen has no ``moa.csv``
        (nothing to cross-check) or reads its MoA from a DeepProfiler index column.

    Raises:
        ScreenFormatError: A table is missing or malformed.
    """
    import difflib

    root = Path(root)
    columns = ["Metadata_Treatment", "Check_Where", "Check_Matched", "Check_Suggestion"]
    if not (root / MOA_TABLE).is_file():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    moa = read_moa_table(root / MOA_TABLE)
    if (root / LOAD_DATA).is_file():
        design = read_platemap(root / PLATEMAP)
        design_name = PLATEMAP
        is_control = design["Metadata_ControlType"] == "negcon"
    else:
        design = _read_csv(root / DEEPPROFILER_INDEX)
        if "Metadata_MoA" in design.columns:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        design = design.rename(columns={"Treatment": "Metadata_Treatment"})
        _require_columns(design, ["Metadata_Treatment"], root / DEEPPROFILER_INDEX)
        design_name = DEEPPROFILER_INDEX
        is_control = design["Metadata_Treatment"].str.upper() == "DMSO"
    treatments = set(design["Metadata_Treatment"])
    annotated = set(moa["Metadata_Treatment"])
    control_names = set(design.loc[is_control, "Metadata_Treatment"])

    def closest(name: str, pool: set[str]) -> str:
        # case and surrounding whitespace first (the commonest typos), then similar spellings
        key = name.strip().casefold()
        same = sorted(p for p in pool if p.strip().casefold() == key)
        if same:
            return same[0]
        folded = {p.strip().casefold(): p for p in sorted(pool)}
        found = difflib.get_close_matches(key, sorted(folded), n=1, cutoff=0.6)
        return folded[found[0]] if found else ""

    rows = []
    for index, name in moa["Metadata_Treatment"].items():
        matched = name in treatments
        rows.append(
            (
                name,
                f"{MOA_TABLE} line {_line(index)}",
                matched,
                "" if matched else closest(name, treatments - annotated),
            )
        )
    first_line = {}
    for index, name in design["Metadata_Treatment"].items():
        first_line.setdefault(name, index)
    for name, index in first_line.items():
        if name in control_names:
            continue
        matched = name in annotated
        rows.append(
            (
                name,
                f"{design_name} line {_line(index)}",
                matched,
                "" if matched else closest(name, annotated - treatments),
            )
        )
    frame = pd.DataFrame(rows, columns=columns)
    frame["Check_Matched"] = frame["Check_Matched"].astype(bool)
    return frame


def fingerprint(table: pd.DataFrame, root: str | Path) -> str:
    """A short, stable fingerprint of a screen: the image table plus every file's size.

    Cheap enough for terabyte screens (no pixel hashing); it changes when a row, a path or the
    size of any file changes. Missing files count as size -1.

    Returns:
        The first 16 hex digits of a SHA-256.
    """
    root = Path(root)
    digest = hashlib.sha256()
    ordered = table.sort_values(["Metadata_Plate", "Metadata_Well", "Metadata_Site"], kind="stable")
    digest.update(ordered.to_csv(index=False).encode())
    path_columns = [c for c in ordered.columns if c.startswith("Path_")]
    for column in path_columns:
        for value in ordered[column]:
            file = root / value
            size = file.stat().st_size if file.is_file() else -1
            digest.update(f"{value}:{size}\n".encode())
    return digest.hexdigest()[:16]
