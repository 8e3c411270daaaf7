"""WSL data: crop dataset, splits, class-balanced sampler, augmentations."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from morphoflow.backbone import scale_crops
from morphoflow.learning.data import (
    Augment,
    BalancedEpochSampler,
    CropDataset,
    split_leave_cells_out,
    split_leave_plates_out,
)
from morphoflow.profiling.crops import load_site_crops
from tests.learning import write_crop_set

# ---------------------------------------------------------------- dataset


def test_dataset_returns_scaled_crops_and_sorted_labels(tmp_path: Path) -> None:
    index = write_crop_set(tmp_path, cells_per_well=3, size=16)
    dataset = CropDataset(index, tmp_path)
    assert dataset.classes == ["cpd_a", "cpd_b", "cpd_c"] and len(dataset) == len(index)
    for item in (0, 4, len(index) - 1):
        crop, label = dataset[item]
        row = index.iloc[item]
        raw = load_site_crops(tmp_path / row["Path_Crops"])[0][row["Metadata_CropIndex"]]
        assert crop.dtype == torch.float32 and crop.shape == (5, 16, 16)
        np.testing.assert_array_equal(crop.numpy(), scale_crops(raw))
        assert dataset.classes[label] == row["Metadata_Treatment"]


def test_dataset_lru_cache_and_transform(tmp_path: Path) -> None:
    index = write_crop_set(tmp_path, cells_per_well=2, size=16)
    dataset = CropDataset(index, tmp_path, transform=lambda x: x * 0 + 7, cache_size=2)
    for item in range(len(index)):
        crop, _ = dataset[item]
        assert torch.all(crop == 7)
    assert len(dataset._cache) == 2
    # uncompressed site files are memory-mapped, not read whole
    assert all(isinstance(v, np.memmap) for v in dataset._cache.values())


def test_dataset_rejects_unknown_labels(tmp_path: Path) -> None:
    index = write_crop_set(tmp_path, cells_per_well=1, size=16)
    with pytest.raises(ValueError, match="cpd_c"):
        CropDataset(index, tmp_path, classes=["cpd_a", "cpd_b"])
    with pytest.raises(ValueError, match="Path_Crops"):
        CropDataset(index.drop(columns="Path_Crops"), tmp_path)


# ---------------------------------------------------------------- splits


def _index(cells: dict[tuple[str, str], int]) -> pd.DataFrame:
    rows = [
        {"Metadata_Plate": p, "Metadata_Well": w, "Metadata_ObjectNumber": i}
        for (p, w), n in cells.items()
        for i in range(n)
    ]
    return pd.DataFrame(rows)


def test_leave_plates_out_never_shares_a_plate() -> None:
    index = _index({(f"P{p}", w): 3 for p in range(8) for w in ("A01", "B02")})
    train, val = split_leave_plates_out(index, fraction=0.25, seed=3)
    train_plates = set(index.iloc[train]["Metadata_Plate"])
    val_plates = set(index.iloc[val]["Metadata_Plate"])
    assert not train_plates & val_plates and len(val_plates) == 2
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(index)))
    again = split_leave_plates_out(index, fraction=0.25, seed=3)
    assert np.array_equal(again[1], val)
    train, val = split_leave_plates_out(index, val_plates=["P5"])
    assert set(index.iloc[val]["Metadata_Plate"]) == {"P5"} and len(val) == 6
    with pytest.raises(ValueError, match="val_plates"):
        split_leave_plates_out(index, val_plates=["P99"])


def test_leave_cells_out_exact_counts_per_well() -> None:
    # wells of 10, 5, 3, 2 and 1 cells -> 6/4, 3/2, 2/1, 1/1, 1/0
    sizes = {("P1", "A01"): 10, ("P1", "A02"): 5, ("P2", "A01"): 3, ("P2", "B07"): 2}
    sizes[("P2", "C03")] = 1
    index = _index(sizes).sample(frac=1.0, random_state=0).reset_index(drop=True)
    train, val = split_leave_cells_out(index, train_fraction=0.6, seed=0)
    assert not set(train) & set(val) and len(train) + len(val) == len(index)
    wells = index[["Metadata_Plate", "Metadata_Well"]].apply(tuple, axis=1)
    n_train = Counter(wells.iloc[train])
    n_val = Counter(wells.iloc[val])
    expected = {("P1", "A01"): (6, 4), ("P1", "A02"): (3, 2), ("P2", "A01"): (2, 1)}
    expected |= {("P2", "B07"): (1, 1), ("P2", "C03"): (1, 0)}
    for well, (t, v) in expected.items():
        assert (n_train[well], n_val[well]) == (t, v), well
    assert np.array_equal(split_leave_cells_out(index, seed=0)[0], train)
    assert not np.array_equal(split_leave_cells_out(index, seed=1)[0], train)
    with pytest.raises(ValueError, match="train_fraction"):
        split_leave_cells_out(index, train_fraction=1.0)


# ---------------------------------------------------------------- sampler


def test_balanced_sampler_draws_the_median_count_per_class() -> None:
    labels = ["a"] * 40 + ["b"] * 10 + ["c"] * 3 + ["d"] * 12 + ["e"] * 25
    sampler = BalancedEpochSampler(labels, seed=0)
    assert sampler.per_class == 12 and len(sampler) == 5 * 12
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        epochs.append(order)
        counts = Counter(labels[i] for i in order)
        assert counts == {k: 12 for k in "abcde"}
        assert len(set(i for i in order if labels[i] == "a")) == 12  # large: no repeats
        c_cells = Counter(i for i in order if labels[i] == "c")  # small: all cells, 4 times
        assert sorted(c_cells.values()) == [4, 4, 4]
        assert list(sampler) == order  # same epoch, same order
    assert epochs[0] != epochs[1] != epochs[2]
    other = BalancedEpochSampler(labels, seed=0)
    other.set_epoch(1)
    assert list(other) == epochs[1]
    different_seed = BalancedEpochSampler(labels, seed=1)
    different_seed.set_epoch(1)
    assert list(different_seed) != epochs[1]


# ---------------------------------------------------------------- augmentations


def test_augment_keeps_shape_dtype_and_is_seeded() -> None:
    x = torch.from_numpy(scale_crops(np.random.default_rng(0).normal(size=(4, 5, 32, 32))))
    augment = Augment()
    a = augment(x, torch.Generator().manual_seed(7))
    b = augment(x, torch.Generator().manual_seed(7))
    c = augment(x, torch.Generator().manual_seed(8))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    single = augment(x[0], torch.Generator().manual_seed(7))
    assert single.shape == (5, 32, 32) and single.dtype == torch.float32
    half = augment(x.half(), torch.Generator().manual_seed(7))
    assert half.dtype == torch.float16


def test_augment_geometry_is_a_dihedral_view_at_full_scale() -> None:
    x = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(1, 2, 8, 8)
    augment = Augment(scale=(1.0, 1.0), brightness=0.0, contrast=0.0)
    views = [torch.rot90(v, k, dims=(2, 3)) for v in (x, x.flip(3)) for k in range(4)]
    for seed in range(12):
        out = augment(x, torch.Generator().manual_seed(seed))
        assert any(torch.allclose(out, v, atol=1e-4) for v in views)
