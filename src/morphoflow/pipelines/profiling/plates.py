"""One plate of the profiling pipeline, start to finish, as one partition task.

:func:`profile_plate` is what a worker runs (sequentially in the Kedro process, or on a Dask
worker): read the plate's sites -> nuclei (local model or Triton) -> illumination function and
8-bit stretch of the plate (optional) -> cells -> crops -> features -> site medians -> well
means. Everything it writes goes into the plate's partition of the
:class:`~morphoflow.execution.store.PartitionStore`, renamed into place when complete::

    <store>/<screen key>/<plate>/
        _partition.json               fingerprint, counts, seconds, host, pid
        labels/<plate>/<well>_s<site>_nuclei.tif
        nuclei.parquet                one row per nucleus (Path_NucleiLabels relative to labels/)
        single_cell/<plate>.parquet   one row per cell: Metadata_* + features
        sites.parquet                 site medians (Metadata_CellCount; count 0 = no cell)
        wells.parquet                 well means of the sites (raw, before correction)
        crop_index.parquet            one row per cell (Path_Crops relative to the partition)
        crops/<plate>/<well>_s<site>.npz   when crops.store

Nothing of a plate's single-cell data returns to the driver: the task returns its small record.
Kedro-free (workers import it without a Kedro session).
"""

from __future__ import annotations

import functools
import json
import logging
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from morphoflow.execution.runner import worker_identity
from morphoflow.execution.store import PartitionStore, complete_fingerprint
from morphoflow.profiling.aggregate import well_profiles
from morphoflow.profiling.extract import CropSettings, profile_sites
from morphoflow.profiling.illumination import plate_illumination, plate_percentiles
from morphoflow.screen.constants import METADATA_COLUMNS
from morphoflow.segmentation.screen import segment_screen
from morphoflow.segmentation.settings import SegmenterSettings, make_segmenter

logger = logging.getLogger(__name__)

PARTITION_LAYOUT_VERSION = 1
"""Changes when the partition's files change meaning (part of every fingerprint)."""


@dataclass(frozen=True)
class PlateTask:
    """Everything one plate's partition needs; picklable, sent to a worker as is.

    Attributes:
        plate: Plate name (``Metadata_Plate``), the partition name.
        rows: The plate's image-table rows.
        root: Screen folder.
        store: Where partitions go.
        screen_key: Key of the screen in the store.
        inputs_digest: The driver's part of the partition's fingerprint (rows, settings,
            model files); the worker adds its image files' sizes and mtimes.
        resume: Reuse the stored partition when its fingerprint matches.
        segmenter: Nucleus segmentation settings (``model`` already a local file path,
            ``"default"``, or ignored with Triton).
        inference: The ``inference:`` block (``backend`` local|triton, ``url``, ...).
        illumination: The ``illumination:`` block.
        crop: Crop settings.
        store_crops: Write every site's crops (``crops.store``).
        features: The ``features:`` block (``extractor``, model file resolved to a path).
    """

    plate: str
    rows: pd.DataFrame
    root: str
    store: PartitionStore
    screen_key: str
    inputs_digest: str
    resume: bool
    segmenter: SegmenterSettings
    inference: dict[str, Any]
    illumination: dict[str, Any]
    crop: CropSettings
    store_crops: bool
    features: dict[str, Any] = field(default_factory=dict)


def triton_client(inference: dict[str, Any]):
    """A Triton client from the ``inference:`` block (``url``, ``protocol``, timeouts)."""
    from morphoflow.serving.client import TritonClient

    return TritonClient(
        str(inference["url"]),
        protocol=inference.get("protocol"),
        timeout_s=float(inference.get("timeout_s", 120)),
        retries=int(inference.get("retries", 4)),
    )


def inference_backend(inference: dict[str, Any]) -> str:
    """``inference.backend``, checked: ``local`` or ``triton``.

    Raises:
        ValueError: Any other value.
    """
    backend = str(inference.get("backend", "local"))
    if backend not in ("local", "triton"):
        raise ValueError(f"inference.backend must be local or triton, got {backend!r}")
    return backend


def _freeze(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def make_plate_segmenter(settings: SegmenterSettings, inference: dict[str, Any]):
    """The ``image -> Segmentation`` function the profiling pipeline uses for every site.

    Built once per process and per (settings, inference) and reused for every plate the
    process runs (a model loads once per worker, not per plate).

    Args:
        settings: Segmentation settings; ``model`` is ``"default"`` or a local file.
        inference: The ``inference:`` block (``local`` runs the model here; ``triton`` sends
            every site to the server's ``nuclei_tta`` model).
    """
    return _segmenter(settings, _freeze(inference))


@functools.lru_cache(maxsize=4)
def _segmenter(settings: SegmenterSettings, inference: str):
    params = json.loads(inference)
    if inference_backend(params) == "triton":
        backend = triton_client(params)
    else:
        from morphoflow.segmentation.onnx_model import load_predictor

        model = None if settings.model in ("", "default") else settings.model
        backend = load_predictor(model, batch_size=settings.batch_size)
    return make_segmenter(settings, backend)


@functools.lru_cache(maxsize=4)
def _extractor(features: str, inference: str):
    return make_extractor(json.loads(features), json.loads(inference))


def make_extractor(params: dict[str, Any], inference: dict[str, Any]):
    """The feature extractor of the ``features:`` block (model files already local paths).

    Raises:
        ValueError: An unknown extractor name.
    """
    name = params["extractor"]
    if name == "cnn" and inference_backend(inference) == "triton":
        from morphoflow.serving.client import TritonFeaturizer

        return TritonFeaturizer(triton_client(inference), batch_size=int(params["batch_size"]))
    if name == "classical":
        from morphoflow.profiling.classical import classical_extractor

        return classical_extractor(str(params.get("set", "default")))
    if name == "imagenet":
        from morphoflow.profiling.cnn import ImageNetFeaturizer

        return ImageNetFeaturizer(
            params.get("weights_path"),
            batch_size=int(params["batch_size"]),
            device=str(params.get("device", "cpu")),
        )
    if name == "cnn":
        from morphoflow.profiling.cnn import OnnxFeaturizer

        return OnnxFeaturizer(params["model"], batch_size=int(params["batch_size"]))
    raise ValueError(f"features.extractor must be classical, imagenet or cnn, got {name!r}")


def profile_plate(task: PlateTask) -> dict[str, Any]:
    """Compute and store one plate's partition; return its record.

    Args:
        task: The plate and its settings.

    A stored partition whose fingerprint matches is returned as it is (``status``
    ``reused``) when ``task.resume``: the worker stats the plate's image files, so the
    driver never stats a whole screen's files.

    Returns:
        The partition record (also stored as ``_partition.json``) plus ``status``
        (``computed`` or ``reused``): ``plate``, ``screen_key``,
        ``fingerprint``, ``n_sites``, ``n_nuclei``, ``n_cells``, ``seconds``, ``host``,
        ``pid``, ``peak_rss_mib`` (the process's peak resident memory so far),
        ``layout_version``.

    Raises:
        Whatever a step raises (an unreadable image names its file); the previous partition
        of the plate, if any, is left as it was.
    """
    start = time.perf_counter()
    root = Path(task.root)
    rows = task.rows.reset_index(drop=True)
    fingerprint = complete_fingerprint(task.inputs_digest, rows, root)
    if task.resume:
        stored = task.store.current_record(task.screen_key, task.plate, fingerprint)
        if stored is not None:
            return {**stored, "status": "reused"}
    record: dict[str, Any] = {
        "plate": task.plate,
        "screen_key": task.screen_key,
        "screen_root": str(root),
        "fingerprint": fingerprint,
        "layout_version": PARTITION_LAYOUT_VERSION,
        "n_sites": int(len(rows)),
        **worker_identity(),
    }
    segment = make_plate_segmenter(task.segmenter, task.inference)
    extractor = _extractor(_freeze(task.features), _freeze(task.inference))
    with task.store.write(task.screen_key, task.plate, record) as staging:
        nuclei = segment_screen(rows, root, segment, staging / "labels")
        nuclei.to_parquet(staging / "nuclei.parquet", index=False)
        illumination, compression = _plate_corrections(rows, root, task.plate, task.illumination)
        if nuclei.empty:
            sites, index = _empty_plate(rows), pd.DataFrame()
        else:
            sites, index = profile_sites(
                rows,
                nuclei,
                root=root,
                labels_dir=staging / "labels",
                extractor=extractor,
                single_cell_dir=staging / "single_cell",
                crop=task.crop,
                illumination=illumination,
                crops_dir=staging / "crops" if task.store_crops else None,
                compression=compression,
                require_cells=False,
            )
        sites.to_parquet(staging / "sites.parquet", index=False)
        well_profiles(sites).to_parquet(staging / "wells.parquet", index=False)
        index.to_parquet(staging / "crop_index.parquet", index=False)
        record.update(
            n_nuclei=int(len(nuclei)),
            n_cells=int(sites["Metadata_CellCount"].sum()),
            seconds=round(time.perf_counter() - start, 3),
            # the process's peak so far (Linux: KiB): a worker's memory across its plates
            peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        )
    return {**record, "status": "computed"}


def _plate_corrections(rows: pd.DataFrame, root: Path, plate: str, params: dict[str, Any]):
    illumination = None
    compression = None
    function = None
    if params.get("enabled", False):
        function = plate_illumination(
            rows, root, int(params["downscale"]), int(params["median_size"])
        )
        illumination = {plate: function}
    if params.get("compress_8bit", False):
        low, high = params["compress_percentiles"]
        compression = {plate: plate_percentiles(rows, root, function, float(low), float(high))}
    return illumination, compression


def _empty_plate(rows: pd.DataFrame) -> pd.DataFrame:
    sites = rows[list(METADATA_COLUMNS)].copy()
    sites["Metadata_CellCount"] = 0
    return sites
