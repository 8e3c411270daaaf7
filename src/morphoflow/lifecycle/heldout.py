"""Frozen held-out sets: the fixed data every model version is scored on before promotion.

A held-out set is a folder with a ``manifest.json``::

    {"format": "morphoflow-heldout/1", "kind": "segmentation" | "featurizer",
     "created": "...", "source": {...how it was made...},
     "files": {"images/000.tif": "<sha256>", ...}}

Evaluators read only the files the manifest lists, after :func:`verify_heldout` checked every
one of them against its SHA-256: a missing or changed file is refused with an error naming it.
The SHA-256 of the manifest itself (:attr:`Heldout.digest`) identifies the set in promotion
records, so two decisions can be checked to have used the same data.

- :func:`freeze_segmentation_heldout`: deterministic synthetic nucleus images + ground-truth
  masks (:mod:`morphoflow.simulate.nuclei`, a seed the shipped model was not
  trained on) as ``images/NNN.tif`` + ``masks/NNN.tif``.
- :func:`freeze_featurizer_heldout`: a subset of plates of a profiling crop store
  (``crops/<plate>/<well>_s<site>.npz`` + ``crop_index.parquet``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from morphoflow.atomic import atomic_dir, write_text_atomic

if TYPE_CHECKING:  # pandas loads only when a featurizer set is frozen: the CLI starts fast
    import pandas as pd

HELDOUT_FORMAT = "morphoflow-heldout/1"
MANIFEST = "manifest.json"
KINDS = ("segmentation", "featurizer")

#: Default folders of the two held-out sets (relative to the project root).
DEFAULT_HELDOUT_DIRS = {
    "segmentation": Path("data/05_model_input/heldout/segmentation"),
    "featurizer": Path("data/05_model_input/heldout/featurizer"),
}


class HeldoutError(ValueError):
    """A held-out set is missing, malformed, or does not match its manifest."""


@dataclass(frozen=True)
class SegmentationHeldoutSettings:
    """How the synthetic segmentation held-out set is drawn.

    The one declaration of these defaults: :func:`freeze_segmentation_heldout`,
    ``morphoflow freeze-heldout`` and the evaluation pipeline's ``freeze_if_missing``
    (``conf/base/parameters_evaluation.yml`` names only ``enabled``; a test keeps it so) all
    take them from here, on purpose the same for every entry point: whichever freezes the set
    first, promotion scores on the same images.

    Attributes:
        n_images: Number of images (>= 1).
        size: Image side in pixels (>= 32).
        seed: Random seed (one the shipped U-Net was not trained on).

    Raises:
        ValueError: ``n_images`` or ``size`` out of range.
    """

    n_images: int = 12
    size: int = 128
    seed: int = 2018

    def __post_init__(self) -> None:
        if int(self.n_images) < 1:
            raise ValueError(f"n_images must be >= 1, got {self.n_images!r}")
        if int(self.size) < 32:
            raise ValueError(f"size must be >= 32, got {self.size!r}")

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> SegmentationHeldoutSettings:
        """Build from a parameters mapping; absent keys take the defaults, unknown keys are an
        error naming them.

        Example:
            >>> SegmentationHeldoutSettings.from_params({"size": 64})
            SegmentationHeldoutSettings(n_images=12, size=64, seed=2018)
        """
        params = dict(params or {})
        known = [f for f in cls.__dataclass_fields__]
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(f"unknown held-out parameter(s) {unknown}; known: {known}")
        return cls(**{k: int(v) for k, v in params.items()})


#: The defaults of :class:`SegmentationHeldoutSettings` (the CLI's option defaults).
SEGMENTATION_HELDOUT = SegmentationHeldoutSettings()


@dataclass(frozen=True)
class Heldout:
    """A verified held-out set.

    Attributes:
        root: The folder.
        kind: ``segmentation`` or ``featurizer``.
        files: Relative path -> SHA-256, as listed (and verified).
        source: How the set was made (free-form, from the manifest).
        digest: SHA-256 of ``manifest.json``: the identity of the set.
    """

    root: Path
    kind: str
    files: dict[str, str]
    source: dict[str, Any]
    digest: str

    def path(self, relative: str) -> Path:
        """Absolute path of a listed file."""
        return self.root / relative


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def write_manifest(root: str | Path, kind: str, source: dict[str, Any]) -> Heldout:
    """Hash every file under ``root`` (except the manifest) and write ``manifest.json``.

    Args:
        root: The held-out folder, already filled.
        kind: ``segmentation`` or ``featurizer``.
        source: How the set was made (stored as given).

    Returns:
        The :class:`Heldout` (verified by construction).

    Raises:
        HeldoutError: Unknown ``kind`` or an empty folder.
    """
    if kind not in KINDS:
        raise HeldoutError(f"kind must be one of {KINDS}, got {kind!r}")
    root = Path(root)
    files = {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")
    }
    if not files:
        raise HeldoutError(f"held-out folder {root} holds no file to freeze")
    manifest = {
        "format": HELDOUT_FORMAT,
        "kind": kind,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "files": files,
    }
    _write_json_atomic(root / MANIFEST, manifest)
    return Heldout(root, kind, files, dict(source), sha256_file(root / MANIFEST))


def verify_heldout(root: str | Path, kind: str | None = None) -> Heldout:
    """Check a held-out set against its manifest: every listed file present and unchanged.

    Args:
        root: The held-out folder.
        kind: Expected kind, or None for any.

    Returns:
        The verified :class:`Heldout`.

    Raises:
        HeldoutError: No folder or manifest, a malformed manifest, a kind other than ``kind``,
            or a listed file that is missing or whose SHA-256 changed (named in the message).
    """
    root = Path(root)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise HeldoutError(
            f"heldout {root} has no {MANIFEST}: not a frozen held-out set (create one with "
            "`morphoflow freeze-heldout`)"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise HeldoutError(f"{manifest_path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != HELDOUT_FORMAT:
        raise HeldoutError(f"{manifest_path} is not a {HELDOUT_FORMAT} manifest")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise HeldoutError(f"{manifest_path} lists no files")
    if kind is not None and manifest.get("kind") != kind:
        raise HeldoutError(
            f"heldout {root} is a {manifest.get('kind')!r} set; a {kind!r} set is needed"
        )
    for relative, expected in sorted(files.items()):
        path = root / relative
        if not path.is_file():
            raise HeldoutError(f"heldout {root}: file {relative} listed in {MANIFEST} is missing")
        actual = sha256_file(path)
        if actual != expected:
            raise HeldoutError(
                f"heldout {root}: file {relative} changed since the set was frozen "
                f"(sha256 {actual[:12]}..., manifest {str(expected)[:12]}...)"
            )
    return Heldout(
        root,
        str(manifest["kind"]),
        {str(k): str(v) for k, v in files.items()},
        dict(manifest.get("source", {})),
        sha256_file(manifest_path),
    )


def _check_fresh(out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        raise HeldoutError(
            f"out_dir {out_dir} exists and is not empty: a frozen set is never overwritten"
        )


def freeze_segmentation_heldout(
    out_dir: str | Path,
    n_images: int = SEGMENTATION_HELDOUT.n_images,
    size: int = SEGMENTATION_HELDOUT.size,
    seed: int = SEGMENTATION_HELDOUT.seed,
) -> Heldout:
    """Write a deterministic synthetic nucleus held-out set and its manifest.

    Images are :func:`~morphoflow.simulate.nuclei.random_nuclei_image` draws
    (wide domain: sizes, densities, bit depths, noise) from ``seed``; the shipped U-Net was
    trained on other seeds. Each image ``images/NNN.tif`` has its ground truth
    ``masks/NNN.tif`` (uint32 instance labels). The folder is filled in a staging directory and
    renamed into place.

    Args:
        out_dir: Folder to create (must not exist, or be empty).
        n_images: Number of images (>= 1).
        size: Image side in pixels (>= 32).
        seed: Random seed: the same arguments give byte-identical files.

    The defaults are :class:`SegmentationHeldoutSettings`'.

    Returns:
        The :class:`Heldout`.

    Raises:
        HeldoutError: ``out_dir`` is not empty.
        ValueError: ``n_images`` or ``size`` out of range.
    """
    import numpy as np

    from morphoflow.screen.io import write_tiff_atomic
    from morphoflow.simulate.nuclei import random_nuclei_image

    SegmentationHeldoutSettings(n_images, size, seed)  # the range checks
    out_dir = Path(out_dir)
    _check_fresh(out_dir)
    with atomic_dir(out_dir) as staging:
        rng = np.random.default_rng(int(seed))
        for i in range(int(n_images)):
            image, labels = random_nuclei_image(rng, (int(size), int(size)))
            write_tiff_atomic(staging / "images" / f"{i:03d}.tif", image)
            write_tiff_atomic(staging / "masks" / f"{i:03d}.tif", labels.astype(np.uint32))
        source = {
            "generator": "morphoflow.simulate.nuclei.random_nuclei_image",
            "n_images": int(n_images),
            "size": int(size),
            "seed": int(seed),
        }
        write_manifest(staging, "segmentation", source)
    return verify_heldout(out_dir, "segmentation")


def segmentation_pairs(heldout: Heldout) -> list[tuple[Path, Path]]:
    """(image, ground-truth mask) files of a segmentation set, in name order.

    Raises:
        HeldoutError: An image has no mask.
    """
    images = sorted(k for k in heldout.files if k.startswith("images/"))
    pairs = []
    for relative in images:
        mask = "masks/" + relative.split("/", 1)[1]
        if mask not in heldout.files:
            raise HeldoutError(f"heldout {heldout.root}: image {relative} has no mask {mask}")
        pairs.append((heldout.path(relative), heldout.path(mask)))
    if not pairs:
        raise HeldoutError(f"heldout {heldout.root} lists no images/ file")
    return pairs


CROP_INDEX = "crop_index.parquet"


def freeze_featurizer_heldout(
    crops_dir: str | Path,
    crop_index: str | Path | pd.DataFrame,
    out_dir: str | Path,
    plates: Sequence[str] | str = "last_plate_per_source",
) -> Heldout:
    """Copy some plates of a profiling crop store into a frozen featurizer held-out set.

    The set holds ``crops/<plate>/<well>_s<site>.npz`` (copied byte for byte), the matching
    rows of the crop index as ``crop_index.parquet``, and the manifest.

    Args:
        crops_dir: The crop store (the profiling pipeline's ``crops.dir`` with
            ``crops.store: true``).
        crop_index: Its index (``data/05_model_input/crop_index.parquet``) or the table.
        out_dir: Folder to create (must not exist, or be empty).
        plates: Plate names, or ``"last_plate_per_source"`` (the last plate, in sorted
            order, of every source: the plates the segmentation evaluation holds out too).

    Returns:
        The :class:`Heldout`.

    Raises:
        HeldoutError: ``out_dir`` is not empty.
        FileNotFoundError: ``crops_dir``, the index, or a crop file is missing.
        ValueError: The index lacks columns, has no stored crops, or names unknown plates.
    """
    import pandas as pd

    from morphoflow.screen.constants import METADATA_COLUMNS

    crops_dir = Path(crops_dir)
    if not crops_dir.is_dir():
        raise FileNotFoundError(f"crops_dir not found: {crops_dir}")
    if isinstance(crop_index, pd.DataFrame):
        index = crop_index.copy()
    else:
        if not Path(crop_index).is_file():
            raise FileNotFoundError(f"crop_index not found: {crop_index}")
        index = pd.read_parquet(crop_index)
    required = [*METADATA_COLUMNS, "Path_Crops", "Metadata_CropIndex"]
    missing = [c for c in required if c not in index.columns]
    if missing:
        raise ValueError(f"crop_index lacks the columns {missing}")
    if (index["Path_Crops"].fillna("") == "").all():
        raise ValueError(
            "crop_index has no stored crops (Path_Crops is empty): run the profiling pipeline "
            "with crops.store=true"
        )
    available = sorted(index["Metadata_Plate"].astype(str).unique())
    if isinstance(plates, str):
        if plates != "last_plate_per_source":
            raise ValueError(
                f"plates must be 'last_plate_per_source' or a list of plates, got {plates!r}"
            )
        chosen = sorted(
            {
                sorted(group["Metadata_Plate"].astype(str).unique())[-1]
                for _, group in index.groupby("Metadata_Source")
            }
        )
    else:
        chosen = sorted(str(p) for p in plates)
        unknown = sorted(set(chosen) - set(available))
        if unknown or not chosen:
            raise ValueError(f"plates {unknown or chosen} are not in crop_index ({available})")
    subset = index[index["Metadata_Plate"].astype(str).isin(chosen)]
    subset = subset[subset["Path_Crops"].fillna("") != ""].reset_index(drop=True)
    files = sorted(subset["Path_Crops"].unique())
    absent = [f for f in files if not (crops_dir / f).is_file()]
    if absent:
        raise FileNotFoundError(f"crop files missing from {crops_dir}: {absent[:5]}")
    out_dir = Path(out_dir)
    _check_fresh(out_dir)
    with atomic_dir(out_dir) as staging:
        for relative in files:
            target = staging / "crops" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(crops_dir / relative, target)
        subset.to_parquet(staging / CROP_INDEX, index=False)
        source = {
            "crops_dir": str(crops_dir),
            "plates": chosen,
            "n_cells": len(subset),
            "n_sites": len(files),
        }
        write_manifest(staging, "featurizer", source)
    return verify_heldout(out_dir, "featurizer")
