"""Weakly supervised learning (WSL) data: crop dataset, splits, class-balanced sampler,
augmentations.

- :class:`CropDataset` reads single-cell crops from the per-site ``.npz`` files written by
  :mod:`morphoflow.profiling.crops` (one crop at a time, memory-mapped: the files are
  uncompressed), scales each crop channel to [-1, 1] with
  :func:`~morphoflow.backbone.scale_crops` (the input scaling of every CNN featurizer, so
  training and featurisation see the same inputs) and returns ``(crop, label)``.
- Splits return *positional* row numbers of the index table (use ``index.iloc[rows]`` or
  ``torch.utils.data.Subset(dataset, rows)``): leave-plates-out (whole plates validate) and
  leave-cells-out (~60 % of every well's cells train, the rest validate).
- :class:`BalancedEpochSampler` re-balances classes every epoch as DeepProfiler does: it draws
  the median per-class count from every class.
- :class:`Augment` applies random crop-resize, flips, 90 degree rotations (one batched affine
  resampling) and per-channel brightness/contrast jitter to *scaled* crops (before scaling the
  jitter would be undone by the per-crop min/max scaling).
"""

from __future__ import annotations

import math
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset, Sampler

from morphoflow.backbone import scale_crops

INDEX_COLUMNS = ("Path_Crops", "Metadata_CropIndex")


def _read_npz_member(path: Path, name: str) -> np.ndarray:
    """An array of an ``.npz``: memory-mapped when stored uncompressed, else read whole."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        with np.load(path) as data:
            return data[name]
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
        if local[:4] != b"PK\x03\x04":
            raise ValueError(f"{path} is not a valid .npz archive (bad local header)")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        handle.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        offset = handle.tell()
    if dtype.hasobject:
        raise ValueError(f"{path}: {name} holds Python objects, not crops")
    return np.memmap(
        path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C"
    )


class CropDataset(Dataset):
    """Single-cell crops of an index table and their class labels.

    Args:
        index: One row per cell with ``Path_Crops`` (relative to ``crops_dir``),
            ``Metadata_CropIndex`` (row in that file) and ``label_col``.
        crops_dir: Folder the ``Path_Crops`` are relative to.
        label_col: Column holding the class of each cell (default: the treatment).
        classes: All classes, in any order (stored sorted, so that label ids are reproducible);
            default: the sorted labels of ``index``.
        transform: Called on each scaled crop tensor (5, S, S) (e.g. :class:`Augment`).
        cache_size: Site files kept open (least recently used are closed).

    Raises:
        ValueError: Missing columns, missing labels, labels not in ``classes``, a bad
            ``cache_size``.

    Example:
        >>> dataset = CropDataset(index, "data/crops")  # doctest: +SKIP
        >>> crop, label = dataset[0]                     # doctest: +SKIP
    """

    def __init__(
        self,
        index: pd.DataFrame,
        crops_dir: str | Path,
        label_col: str = "Metadata_Treatment",
        classes: Sequence[Hashable] | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        cache_size: int = 16,
    ) -> None:
        missing = [c for c in (*INDEX_COLUMNS, label_col) if c not in index.columns]
        if missing:
            raise ValueError(f"index lacks columns {missing}")
        if int(cache_size) < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size!r}")
        values = index[label_col]
        if values.isna().any():
            raise ValueError(f"index has {int(values.isna().sum())} rows without a {label_col}")
        if classes is None:
            classes = pd.unique(values).tolist()
        if len(set(classes)) != len(list(classes)):
            raise ValueError("classes has duplicates")
        self.classes: list[Any] = sorted(classes)
        lookup = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted({str(v) for v in values if v not in lookup})
        if unknown:
            raise ValueError(f"labels not in classes: {unknown}")
        self.crops_dir = Path(crops_dir)
        self.label_col = label_col
        self.transform = transform
        self.cache_size = int(cache_size)
        self.paths = index["Path_Crops"].astype(str).to_numpy()
        self.rows = index["Metadata_CropIndex"].to_numpy(np.int64)
        self.targets = np.array([lookup[v] for v in values], dtype=np.int64)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.targets)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()  # memory maps are reopened in each worker
        return state

    def _crops(self, relpath: str) -> np.ndarray:
        crops = self._cache.get(relpath)
        if crops is None:
            crops = _read_npz_member(self.crops_dir / relpath, "crops")
            self._cache[relpath] = crops
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(relpath)
        return crops

    def raw_crop(self, item: int) -> np.ndarray:
        """The stored (unscaled) crop of row ``item`` as float32 (5, S, S)."""
        crops = self._crops(self.paths[item])
        row = int(self.rows[item])
        if not 0 <= row < len(crops):
            raise IndexError(
                f"Metadata_CropIndex {row} out of range for {self.paths[item]} ({len(crops)} crops)"
            )
        return np.asarray(crops[row], dtype=np.float32)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        crop = torch.from_numpy(scale_crops(self.raw_crop(int(item))))
        if self.transform is not None:
            crop = self.transform(crop)
        return crop, int(self.targets[item])


def _group_codes(index: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    missing = [c for c in columns if c not in index.columns]
    if missing:
        raise ValueError(f"index lacks columns {missing}")
    return index.groupby(list(columns), sort=True, dropna=False).ngroup().to_numpy()


def split_leave_plates_out(
    index: pd.DataFrame,
    val_plates: Sequence[str] | None = None,
    fraction: float = 0.25,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out whole plates: no plate has cells in both parts.

    Args:
        index: One row per cell with ``Metadata_Plate``.
        val_plates: Plates to validate on; default: ``round(fraction * n_plates)`` plates (at
            least 1, at most all but one) drawn with ``seed``.
        fraction: Fraction of plates to validate on when ``val_plates`` is None.
        seed: Seed of the plate draw.

    Returns:
        Sorted positional rows of the training and the validation cells.

    Raises:
        ValueError: Unknown ``val_plates``, all plates held out, fewer than 2 plates, or
            ``fraction`` outside (0, 1).
    """
    if "Metadata_Plate" not in index.columns:
        raise ValueError("index lacks column Metadata_Plate")
    plates = index["Metadata_Plate"].astype(str).to_numpy()
    unique = sorted(set(plates))
    if val_plates is None:
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
        if len(unique) < 2:
            raise ValueError(f"leave-plates-out needs >= 2 plates, index has {unique}")
        n_val = min(max(1, int(math.floor(fraction * len(unique) + 0.5))), len(unique) - 1)
        order = np.random.default_rng(seed).permutation(len(unique))
        chosen = {unique[i] for i in order[:n_val]}
    else:
        chosen = {str(p) for p in val_plates}
        unknown = sorted(chosen - set(unique))
        if unknown:
            raise ValueError(f"val_plates not in index: {unknown}")
        if chosen == set(unique):
            raise ValueError("val_plates holds out every plate: nothing left to train on")
        if not chosen:
            raise ValueError("val_plates is empty")
    is_val = np.isin(plates, sorted(chosen))
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def split_leave_cells_out(
    index: pd.DataFrame, train_fraction: float = 0.6, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Within every well, ~``train_fraction`` of its cells train and the rest validate.

    A well with n cells gives ``max(1, round_half_up(train_fraction * n))`` cells to training
    (so a 1-cell well trains), drawn at random with ``seed``; wells are (source,) plate, well.

    Args:
        index: One row per cell with ``Metadata_Plate``, ``Metadata_Well`` (and, when present,
            ``Metadata_Source``).
        train_fraction: Fraction of each well's cells that train, in (0, 1).
        seed: Seed of the draw.

    Returns:
        Sorted positional rows of the training and the validation cells (disjoint, together
        all rows).

    Raises:
        ValueError: ``train_fraction`` outside (0, 1) or missing columns.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    keys = [c for c in ("Metadata_Source",) if c in index.columns]
    codes = _group_codes(index, [*keys, "Metadata_Plate", "Metadata_Well"])
    rng = np.random.default_rng(seed)
    is_train = np.zeros(len(index), dtype=bool)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for rows in np.split(order, bounds):
        if len(rows) == 0:
            continue
        n_train = max(1, int(math.floor(train_fraction * len(rows) + 0.5)))
        is_train[rng.permutation(rows)[:n_train]] = True
    return np.flatnonzero(is_train), np.flatnonzero(~is_train)


class BalancedEpochSampler(Sampler[int]):
    """Class-balanced epochs: every class contributes the median per-class count.

    Larger classes are sub-sampled without replacement; smaller ones are up-sampled with
    replacement, stratified: every cell of the class appears ``m // n`` times and
    ``m % n`` of them once more (less variance than independent draws, same expected count).
    The median is rounded half up. The order is shuffled and depends only on
    (``seed``, epoch): call :meth:`set_epoch` before each epoch (as with
    ``DistributedSampler``), iterating twice in the same epoch gives the same order.

    Args:
        labels: Class of every dataset item (any hashable values).
        seed: Seed of the draws.

    Raises:
        ValueError: No labels.
    """

    def __init__(self, labels: Sequence[Hashable] | np.ndarray, seed: int = 0) -> None:
        values = pd.Series(np.asarray(labels))
        if len(values) == 0:
            raise ValueError("labels is empty: nothing to sample")
        codes, uniques = pd.factorize(values, sort=True)
        self.classes = list(uniques)
        self._members = [np.flatnonzero(codes == k) for k in range(len(uniques))]
        counts = np.array([len(m) for m in self._members])
        self.per_class = int(math.floor(float(np.median(counts)) + 0.5))
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose draw :meth:`__iter__` yields."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._members) * self.per_class

    def indices(self) -> np.ndarray:
        """This epoch's item numbers, in order."""
        rng = np.random.default_rng([self.seed, self.epoch])
        m = self.per_class
        chosen = []
        for members in self._members:
            if len(members) >= m:
                chosen.append(rng.choice(members, size=m, replace=False))
            else:
                repeats, extra = divmod(m, len(members))
                chosen.append(np.tile(members, repeats))
                chosen.append(rng.choice(members, size=extra, replace=False))
        out = np.concatenate(chosen)
        return out[rng.permutation(len(out))]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())


class Augment:
    """Random crop-resize, flips, 90 degree rotations and per-channel intensity jitter.

    Works on scaled crops, one (C, S, S) or a batch (N, C, S, S) (independent draws per crop;
    on any device, random numbers are drawn on the CPU so results do not depend on the device).
    Geometry is one bilinear affine resampling per crop: a square window covering a random
    ``scale`` fraction of the crop area at a random position, resized back to S x S, then a
    random dihedral view (horizontal flip and k x 90 degree rotation; exact when the window is
    the whole crop). Intensity: per channel ``x' = (x - mean) * contrast + mean + brightness``
    with ``contrast ~ U(1 - c, 1 + c)`` and ``brightness ~ U(-b, b)``. Shape and dtype are kept.

    Args:
        scale: Range of the window's area fraction (crop-resize); ``(1, 1)`` disables it.
        flips: Random horizontal flips (with the rotations, all 8 dihedral views).
        rotations: Random 90 degree rotations.
        brightness: ``b`` (in scaled units; crops span [-1, 1]).
        contrast: ``c``.

    Raises:
        ValueError: A bad range.

    Example:
        >>> augment = Augment()
        >>> out = augment(torch.zeros(5, 64, 64), torch.Generator().manual_seed(0))
        >>> tuple(out.shape)
        (5, 64, 64)
    """

    def __init__(
        self,
        scale: tuple[float, float] = (0.8, 1.0),
        flips: bool = True,
        rotations: bool = True,
        brightness: float = 0.1,
        contrast: float = 0.2,
    ) -> None:
        low, high = (float(s) for s in scale)
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale!r}")
        if brightness < 0 or not 0 <= contrast < 1:
            raise ValueError(
                f"brightness must be >= 0 and contrast in [0, 1), got {brightness!r}, {contrast!r}"
            )
        self.scale = (low, high)
        self.flips = bool(flips)
        self.rotations = bool(rotations)
        self.brightness = float(brightness)
        self.contrast = float(contrast)

    def __repr__(self) -> str:
        return (
            f"Augment(scale={self.scale}, flips={self.flips}, rotations={self.rotations}, "
            f"brightness={self.brightness}, contrast={self.contrast})"
        )

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment one crop (C, S, S) or a batch (N, C, S, S)."""
        if x.ndim == 3:
            return self(x[None], generator)[0]
        if x.ndim != 4:
            raise ValueError(f"x must be (C, S, S) or (N, C, S, S), got shape {tuple(x.shape)}")
        n, c = x.shape[:2]

        def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
            return low + (high - low) * torch.rand(shape, generator=generator)

        side = torch.sqrt(uniform(n, low=self.scale[0], high=self.scale[1]))
        shift = (1.0 - side)[:, None] * uniform(n, 2, low=-1.0, high=1.0)
        k = (
            torch.randint(0, 4, (n,), generator=generator)
            if self.rotations
            else torch.zeros(n, dtype=torch.long)
        )
        flip = (
            torch.rand(n, generator=generator) < 0.5 if self.flips else torch.zeros(n, dtype=bool)
        )
        contrast = uniform(n, c, 1, 1, low=1 - self.contrast, high=1 + self.contrast)
        brightness = uniform(n, c, 1, 1, low=-self.brightness, high=self.brightness)

        cos = torch.tensor([1.0, 0.0, -1.0, 0.0])[k]
        sin = torch.tensor([0.0, 1.0, 0.0, -1.0])[k]
        sx = torch.where(flip, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3)
        # output -> input coordinates: rotate, flip, then shrink to the window and shift it
        theta[:, 0, 0] = side * cos * sx
        theta[:, 0, 1] = -side * sin
        theta[:, 1, 0] = side * sin * sx
        theta[:, 1, 1] = side * cos
        theta[:, :, 2] = shift
        work = x.float()
        grid = F.affine_grid(theta.to(x.device), list(work.shape), align_corners=False)
        out = F.grid_sample(work, grid, mode="bilinear", padding_mode="border", align_corners=False)
        mean = out.mean(dim=(2, 3), keepdim=True)
        out = (out - mean) * contrast.to(x.device) + mean + brightness.to(x.device)
        return out.to(x.dtype)
