"""Files of ``morphoflow segment`` / ``score-segmentation``: inputs, outputs, pairing by name."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from morphoflow.atomic import atomic_path
from morphoflow.screen.io import (
    check_label_file,
    read_image,
    require_finite,
    write_tiff_atomic,
)

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")
#: Suffixes stripped from file stems to pair predictions with ground truth.
#: Longer suffixes first: ``_cp_masks`` (Cellpose's output) before ``_masks``.
LABEL_SUFFIXES = (
    "_labels",
    "_label",
    "_nuclei_truth",
    "_cp_masks",
    "_masks",
    "_mask",
    "_truth",
)


def collect_images(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders (non-recursive) into a sorted list of image files.

    In a folder, TIFF and PNG files are taken except ``*_labels`` outputs; other files are
    skipped, and lossy JPEGs (not fit for measurement) are named in a warning.

    Raises:
        FileNotFoundError: A path does not exist or a folder holds no image.

    Warns:
        UserWarning: A folder holds JPEG files, which are skipped.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            images = sorted(
                p
                for p in path.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_labels")
            )
            jpegs = sorted(p.name for p in path.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
            if jpegs:
                warnings.warn(
                    f"{path}: {len(jpegs)} JPEG file(s) skipped (lossy compression alters "
                    "intensities; give TIFF or PNG): " + ", ".join(jpegs[:5]),
                    stacklevel=2,
                )
            if not images:
                own = [p.name for p in path.iterdir() if p.stem.endswith("_labels")]
                raise FileNotFoundError(
                    f"no .tif/.tiff/.png image in folder {path}"
                    + (
                        f" ({len(own)} *_labels file(s) skipped: segment's own outputs)"
                        if own
                        else ""
                    )
                )
            found.extend(images)
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"image not found: {path}")
    return found


def load_channel(path: Path, channel: int | None) -> np.ndarray:
    """Read a 2-D image, or one channel of a multi-channel image, for segmentation.

    The channel axis comes from the file's metadata (see
    :func:`morphoflow.screen.io.read_image`): a ``(5, H, W)`` stack, an ImageJ ``CYX``
    hyperstack and a channels-last ``(H, W, 5)`` TIFF (axes ``YXS``) all give the same plane
    for the same ``channel``.

    Args:
        path: Image file (TIFF or PNG).
        channel: 0-based channel index; ``None`` (or 0) for a single-channel image.

    Returns:
        The plane (H, W), dtype as stored.

    Raises:
        ImageReadError: (a ValueError) the file cannot be read, its channel axis cannot be
            told, or it holds NaN or infinite pixels (the message names the file).
        ValueError: Multi-channel input without ``channel``, or ``channel`` out of range.
    """
    image = read_image(path)
    if image.ndim == 2:
        if channel not in (None, 0):
            raise ValueError(f"{path} has a single channel; --channel {channel} does not exist")
        plane = image
    else:
        n = image.shape[0]
        if channel is None:
            raise ValueError(
                f"{path} has {n} channels of {image.shape[1]}x{image.shape[2]} pixels; choose "
                f"one with --channel N (0..{n - 1})"
            )
        if not 0 <= channel < n:
            raise ValueError(f"--channel {channel} is out of range for {path} with {n} channels")
        plane = image[channel]
    require_finite(plane, path)
    return plane


LABEL_MAX = int(np.iinfo(np.uint32).max)
"""Largest label a label TIFF holds (uint32)."""


def label_dtype(labels: np.ndarray) -> type:
    """uint16 when the labels fit, else uint32.

    Raises:
        ValueError: A label above :data:`LABEL_MAX` (it would wrap around in uint32).
    """
    top = int(labels.max(initial=0))
    if top > LABEL_MAX:
        raise ValueError(
            f"label {top} does not fit a uint32 label image (largest {LABEL_MAX}): relabel the "
            "objects 1..n first (e.g. skimage.segmentation.relabel_sequential)"
        )
    return np.uint16 if top < 65535 else np.uint32


def write_labels(path: Path, labels: np.ndarray) -> None:
    """Write an instance label TIFF (uint16 or uint32), atomically."""
    write_tiff_atomic(path, labels.astype(label_dtype(labels)))


def write_csv_atomic(path: Path, frame: pd.DataFrame) -> None:
    """Write a CSV through a temporary file in the same folder."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def base_stem(path: Path) -> str:
    """File stem without a label suffix (``A01_s1_labels.tif`` -> ``A01_s1``)."""
    stem = path.name
    for suffix in IMAGE_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    for suffix in LABEL_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def label_file_index(folder: Path) -> dict[str, Path]:
    """The label images of ``folder`` by :func:`base_stem` (``a_labels.tif`` -> ``"a"``).

    Where several files share a base stem, the one with a label suffix (:data:`LABEL_SUFFIXES`)
    is taken: ``t00.tif`` beside ``t00_mask.tif`` is the image and its mask.

    Raises:
        FileNotFoundError: ``folder`` is a file, is missing, or holds no image files.
        ValueError: Two files with label suffixes share a base stem (``x_labels.tif`` and
            ``x_masks.tif``): which one to score is not clear.
    """
    if folder.is_file():
        raise FileNotFoundError(
            f"{folder} is a file: --pred and --truth take folders (images paired by name)"
        )
    if not folder.is_dir():
        raise FileNotFoundError(f"folder not found: {folder}")
    candidates: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            candidates.setdefault(base_stem(path), []).append(path)
    if not candidates:
        raise FileNotFoundError(f"no label images in {folder}")
    files = {}
    for stem, paths in candidates.items():
        labelled = [p for p in paths if base_stem(p) != p.stem] or paths
        if len(labelled) > 1:
            raise ValueError(
                f"{folder} holds {len(labelled)} label images for {stem!r}: "
                + ", ".join(p.name for p in labelled)
                + "; keep one per image (predictions and truth in separate folders)"
            )
        files[stem] = labelled[0]
    return files


def pair_label_files(pred_dir: Path, truth_dir: Path) -> list[tuple[str, Path, Path]]:
    """Pair prediction and truth label images by :func:`base_stem`, sorted by stem.

    Predictions without a truth image are not paired (``score-segmentation`` lists them).

    Raises:
        FileNotFoundError: A folder is missing or empty, or a truth image has no prediction.
        ValueError: A prediction would be scored against itself (the same file in both
            folders), or a folder holds two label images for one stem.
    """
    return pair_label_index(label_file_index(pred_dir), label_file_index(truth_dir), pred_dir)


def pair_label_index(
    preds: dict[str, Path], truths: dict[str, Path], pred_dir: Path
) -> list[tuple[str, Path, Path]]:
    """:func:`pair_label_files` for folders already indexed by :func:`label_file_index`.

    Raises:
        As :func:`pair_label_files` (``pred_dir`` is named in the messages).
    """
    missing = sorted(set(truths) - set(preds))
    if missing:
        unpaired = sorted(set(preds) - set(truths))
        raise FileNotFoundError(
            f"{len(missing)} truth image(s) have no prediction in {pred_dir}: "
            + ", ".join(str(truths[m].name) for m in missing[:5])
            + (
                " (predictions without truth: "
                + ", ".join(str(preds[u].name) for u in unpaired[:5])
                + ")"
                if unpaired
                else ""
            )
            + "; files pair when their names match after dropping one of "
            + ", ".join(LABEL_SUFFIXES)
        )
    pairs = [(stem, preds[stem], truths[stem]) for stem in sorted(truths)]
    for _, pred, truth in pairs:
        if pred.resolve() == truth.resolve():
            raise ValueError(
                f"{pred} would be scored against itself: --pred and --truth must hold different "
                "files"
            )
    return pairs


def read_labels(path: Path) -> np.ndarray:
    """Read an instance label image (2-D, integer, 0 = background) as int64.

    Raises:
        ImageReadError: (a ValueError) the file cannot be read, holds negative values, or looks
            like an intensity image (see :func:`morphoflow.screen.io.check_label_file`).
        ValueError: The image is not 2-D or not of an integer dtype.
    """
    labels = read_image(path)
    if labels.ndim != 2:
        raise ValueError(f"label image {path} must be 2-D, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"label image {path} must hold integers, got {labels.dtype}")
    check_label_file(labels, path)
    return labels.astype(np.int64)


def unique_stems(paths: Sequence[Path]) -> None:
    """Refuse inputs whose outputs would overwrite each other."""
    seen: dict[str, Path] = {}
    for path in paths:
        stem = path.stem
        if stem in seen:
            raise ValueError(f"{path} and {seen[stem]} would both write {stem}_labels.tif")
        seen[stem] = path
