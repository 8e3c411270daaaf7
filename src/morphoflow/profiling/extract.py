"""From sites to single-cell features and site profiles, streamed one site at a time.

Per site: read the 5 channels -> (optional) illumination correction -> nucleus labels (from the
segmentation step) -> cell bodies -> crops -> features. Single-cell features are appended to
one Parquet file per plate (never all in memory); only the site medians are returned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from morphoflow.profiling.aggregate import SITE_STRATA, SiteMedianAccumulator
from morphoflow.profiling.cells import segment_cells
from morphoflow.profiling.classical import FEATURE_SET_COLUMN, intensity_scale_for
from morphoflow.profiling.crops import (
    crop_cells,
    crops_relpath,
    load_site_crops,
    save_site_crops,
)
from morphoflow.profiling.illumination import compress_8bit, correct
from morphoflow.progress import track
from morphoflow.screen.constants import METADATA_COLUMNS
from morphoflow.screen.io import read_image, read_site

Extractor = Callable[[np.ndarray, np.ndarray], pd.DataFrame]
"""(crops (N, 5, S, S) float32, masks (N, S, S) uint8) -> features (N rows, no Metadata_).

An extractor may also have ``site_features(image (5, H, W), nuclei (H, W), cells (H, W),
objects (N,), intensity_scale=...) -> features (N rows)``: :func:`profile_sites` then measures
whole objects in the site instead of crops (the classical extractor), and a ``feature_set_id``
attribute, recorded as ``Metadata_FeatureSet`` in the single-cell and site tables."""

_SITE_KEYS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]


@dataclass
class CropSettings:
    """How cells are cropped (see :mod:`morphoflow.profiling.crops`)."""

    size: int = 128
    mask_neighbours: bool = True
    edge: str = "pad"


class _PlateWriter:
    """Append single-cell tables to ``<dir>/<plate>.parquet``, one open writer at a time."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.plate: str | None = None
        self.writer: pq.ParquetWriter | None = None
        self.tmp: Path | None = None
        self.schema: pa.Schema | None = None

    def write(self, plate: str, frame: pd.DataFrame) -> None:
        if plate != self.plate:
            self.close()
            self.directory.mkdir(parents=True, exist_ok=True)
            self.plate = plate
            self.tmp = self.directory / f".{plate}.parquet.tmp"
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.writer is None:
            self.schema = table.schema
            self.writer = pq.ParquetWriter(self.tmp, self.schema)
        self.writer.write_table(table.cast(self.schema))

    def close(self) -> None:
        if self.writer is not None and self.tmp is not None and self.plate is not None:
            self.writer.close()
            self.tmp.replace(self.directory / f"{self.plate}.parquet")
        self.writer, self.plate, self.tmp = None, None, None

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
        self.writer, self.plate, self.tmp = None, None, None


def profile_sites(
    image_table: pd.DataFrame,
    nuclei: pd.DataFrame,
    *,
    root: str | Path,
    labels_dir: str | Path,
    extractor: Extractor,
    single_cell_dir: str | Path,
    crop: CropSettings | None = None,
    illumination: Mapping[str, np.ndarray] | None = None,
    crops_dir: str | Path | None = None,
    compression: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    require_cells: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Single-cell features of every site; returns site profiles and the crop index.

    Args:
        image_table: Canonical image table.
        nuclei: Nuclei table of the segmentation step (site keys, ``ObjectNumber``, centres,
            ``Path_NucleiLabels``).
        root: Screen folder.
        labels_dir: Folder of the nucleus label images.
        extractor: Feature extractor.
        single_cell_dir: Receives ``<plate>.parquet`` (one row per cell).
        crop: Crop settings.
        illumination: Plate -> illumination function (C, H, W); None = no correction.
        crops_dir: When given, every site's crops are stored there (``.npz``).
        compression: Plate -> per-channel (low, high) percentiles: corrected images are
            stretched and rounded to 8 bit (lossy, DeepProfiler-style) before cropping.
        require_cells: Raise when no site has a cell (a whole screen); False for one
            partition of a screen (a plate of empty wells): every site then gets count 0.

    Returns:
        (site profiles: median of each site's cells with ``Metadata_CellCount``; every site
        of ``image_table`` has a row, a site without a profiled cell with count 0 and NaN
        features,
        crop index: one row per cell with its site, centre, ``Path_Crops`` (or "") and
        ``Metadata_CropIndex``).

    Raises:
        ValueError: No site has a cell and ``require_cells``.
    """
    crop = crop or CropSettings()
    root, labels_dir, single_cell_dir = Path(root), Path(labels_dir), Path(single_cell_dir)
    by_site = {key: frame for key, frame in nuclei.groupby(_SITE_KEYS, sort=False)}
    ordered = image_table.sort_values(
        ["Metadata_Plate", "Metadata_Well", "Metadata_Site"], kind="stable"
    )
    writer = _PlateWriter(single_cell_dir)
    sites = SiteMedianAccumulator()
    empty_sites: list[dict[str, object]] = []  # sites without a profiled cell: count 0
    index_rows: list[pd.DataFrame] = []
    # an extractor with site_features (the classical one) measures whole sites, not crops
    site_extractor = getattr(extractor, "site_features", None)
    feature_set = getattr(extractor, "feature_set_id", None)
    try:
        for site in track(ordered.to_dict("records"), "Profiling sites", total=len(ordered)):
            key = tuple(site[k] for k in _SITE_KEYS)
            meta = {k: site[k] for k in METADATA_COLUMNS}
            if feature_set is not None:  # e.g. "cp4-v2:default" (classical extractor)
                meta[FEATURE_SET_COLUMN] = feature_set
            objects = by_site.get(key)
            if objects is None or objects.empty:
                empty_sites.append({**meta, "Metadata_CellCount": 0})
                continue
            raw = read_site(site, root=root)
            scale = intensity_scale_for(raw.dtype)  # CellProfiler's: uint16 / 65535
            image = correct(
                raw, None if illumination is None else illumination[site["Metadata_Plate"]]
            )
            if compression is not None:
                low, high = compression[site["Metadata_Plate"]]
                image = compress_8bit(image, low, high).astype(np.float32)
                scale = 1.0 / 255.0
            labels = read_image(labels_dir / objects["Path_NucleiLabels"].iloc[0]).astype(np.int32)
            cells = segment_cells(image, labels)
            crops = crop_cells(
                image, labels, cells, objects, crop.size, crop.mask_neighbours, crop.edge
            )
            if len(crops) == 0:
                empty_sites.append({**meta, "Metadata_CellCount": 0})
                continue
            if site_extractor is not None:
                # whole objects in the site's labels (never cut by a crop)
                features = site_extractor(
                    image,
                    labels,
                    cells,
                    crops.objects["ObjectNumber"].to_numpy(np.int64),
                    intensity_scale=scale,
                ).reset_index(drop=True)
            else:
                features = extractor(crops.crops, crops.masks).reset_index(drop=True)
            cell_meta = pd.DataFrame({k: [v] * len(crops) for k, v in meta.items()})
            cell_meta["Metadata_ObjectNumber"] = crops.objects["ObjectNumber"].to_numpy()
            cell_meta["Metadata_Nuclei_Location_Center_X"] = crops.objects[
                "Nuclei_Location_Center_X"
            ].to_numpy()
            cell_meta["Metadata_Nuclei_Location_Center_Y"] = crops.objects[
                "Nuclei_Location_Center_Y"
            ].to_numpy()
            cell_meta["Metadata_CropEdgeFraction"] = crops.objects[
                "Metadata_CropEdgeFraction"
            ].to_numpy()
            # a cell larger than its crop is cut by it (CNN features see part of it; the
            # classical extractor measures the whole cell in the site)
            whole = np.bincount(np.where(labels > 0, labels, cells).ravel())
            objs = crops.objects["ObjectNumber"].to_numpy(np.int64)
            in_crop = np.count_nonzero(crops.masks, axis=(1, 2))
            cell_meta["Metadata_CropCutsCell"] = in_crop < whole[np.minimum(objs, whole.size - 1)]
            writer.write(site["Metadata_Plate"], pd.concat([cell_meta, features], axis=1))

            sites.add_site(meta, features.to_numpy(np.float64), list(features.columns))
            relative = ""
            if crops_dir is not None:
                relative = crops_relpath(
                    site["Metadata_Plate"], site["Metadata_Well"], site["Metadata_Site"]
                )
                save_site_crops(Path(crops_dir) / relative, crops)
            index = cell_meta[[*METADATA_COLUMNS, "Metadata_ObjectNumber"]].copy()
            index["Nuclei_Location_Center_X"] = crops.objects["Nuclei_Location_Center_X"].to_numpy()
            index["Nuclei_Location_Center_Y"] = crops.objects["Nuclei_Location_Center_Y"].to_numpy()
            index["Metadata_CropEdgeFraction"] = crops.objects[
                "Metadata_CropEdgeFraction"
            ].to_numpy()
            index["Path_Crops"] = relative
            index["Metadata_CropIndex"] = np.arange(len(crops))
            index_rows.append(index)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    if sites.n_sites == 0:
        if require_cells:
            raise ValueError("no cell was found in any site: nothing to profile")
        empty = pd.DataFrame(empty_sites, columns=[*METADATA_COLUMNS, "Metadata_CellCount"])
        return empty, pd.DataFrame()
    table = sites.result()
    if empty_sites:
        # every imaged site keeps a row (count 0, features NaN), so every well reaches the
        # well table and is excluded there with its reason instead of vanishing silently
        empty = pd.DataFrame(empty_sites).reindex(columns=table.columns)
        empty["Metadata_CellCount"] = 0
        table = pd.concat([table, empty.astype(table.dtypes.to_dict())], ignore_index=True)
        table = table.sort_values(list(SITE_STRATA), kind="stable").reset_index(drop=True)
    return table, pd.concat(index_rows, ignore_index=True)


def profile_stored_crops(
    index: pd.DataFrame,
    *,
    crop_file: Callable[[str], Path],
    extractor: Extractor,
    label: str = "Featurizing sites",
) -> pd.DataFrame:
    """Site profiles (median of each site's cells) from the stored crops of a crop index.

    The one path from stored crops to site medians, shared by the representation comparison
    and the featuriser promotion evaluation; its medians are those :func:`profile_sites`
    computes from images (both add sites to a
    :class:`~morphoflow.profiling.aggregate.SiteMedianAccumulator`). Every site file is read
    once; the extractor sees the site's indexed crops and masks.

    Args:
        index: Crop index rows (``Path_Crops``, ``Metadata_CropIndex``, the image-table
            ``Metadata_*`` columns).
        crop_file: Maps a ``Path_Crops`` value to the ``.npz`` file to read (e.g. a folder
            join, or a frozen held-out set's checked lookup).
        extractor: ``(crops (N, 5, S, S) float32, masks (N, S, S)) -> features (N rows)``.
        label: Progress bar label.

    Returns:
        One row per site: the image-table metadata, ``Metadata_CellCount``, features.

    Raises:
        ValueError: Missing columns, cells without stored crops, an index out of a file's
            range, or no cell at all.
    """
    missing = [c for c in ("Path_Crops", "Metadata_CropIndex", *METADATA_COLUMNS) if c not in index]
    if missing:
        raise ValueError(f"index lacks the columns {missing}")
    if index.empty:
        raise ValueError("index has no cell to featurize")
    paths = index["Path_Crops"].astype(str)
    if (paths == "").any():
        raise ValueError(
            "index has cells without stored crops: run profiling with --params crops.store=true"
        )
    accumulator = SiteMedianAccumulator()
    groups = index.groupby(paths.to_numpy(), sort=True)
    for relpath, rows in track(groups, label, total=groups.ngroups):
        crops, masks, _ = load_site_crops(crop_file(str(relpath)))
        positions = rows["Metadata_CropIndex"].to_numpy(np.int64)
        if positions.min() < 0 or positions.max() >= len(crops):
            raise ValueError(f"{relpath}: Metadata_CropIndex out of range ({len(crops)} crops)")
        features = extractor(crops[positions], masks[positions])
        first = rows.iloc[0]
        metadata = {c: first[c] for c in METADATA_COLUMNS}
        accumulator.add_site(metadata, features.to_numpy(np.float64), list(features.columns))
    return accumulator.result()
