"""Tests of morphoflow.profiling.classical on hand-built single-cell crops."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from skimage.feature import graycomatrix, graycoprops
from skimage.measure import regionprops

from morphoflow.profiling._classical_texture import _glcm_counts, _haralick
from morphoflow.profiling.classical import (
    CLASSICAL_COMPARTMENTS,
    SHAPE_FEATURES,
    classical_features,
    feature_names,
)
from morphoflow.screen.constants import CHANNELS

S = 128
NUC = np.array([100.0, 20.0, 30.0, 40.0, 50.0])  # nucleus intensity per channel
CYTO = np.array([10.0, 60.0, 70.0, 80.0, 90.0])  # cytoplasm intensity per channel


def _masks_from(nucleus: np.ndarray, cell: np.ndarray) -> np.ndarray:
    mask = np.zeros(nucleus.shape, dtype=np.uint8)
    mask[cell] = 2
    mask[nucleus] = 1
    return mask


def _disc_cell(
    r_nuc: float = 10, r_cell: float = 25, shift: tuple[int, int] = (0, 0)
) -> tuple[np.ndarray, np.ndarray]:
    """A disc nucleus inside a disc cell, flat intensities NUC / CYTO, zero outside."""
    yy, xx = np.mgrid[:S, :S]
    d2 = (yy - S // 2 - shift[0]) ** 2 + (xx - S // 2 - shift[1]) ** 2
    mask = _masks_from(d2 <= r_nuc**2, d2 <= r_cell**2)
    crop = np.zeros((5, S, S), dtype=np.float32)
    crop[:, mask == 1] = NUC[:, None]
    crop[:, mask == 2] = CYTO[:, None]
    return crop, mask


def _irregular_cell(
    seed: int = 0, shift: tuple[int, int] = (0, 0)
) -> tuple[np.ndarray, np.ndarray]:
    """An elongated, lobed cell with an off-centre nucleus and textured random intensities."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:S, :S].astype(float)
    y, x = yy - S // 2 - shift[0], xx - S // 2 - shift[1]
    u, v = x * np.cos(0.6) + y * np.sin(0.6), -x * np.sin(0.6) + y * np.cos(0.6)
    cell = np.hypot(u / 34, v / 20) <= 1 + 0.15 * np.sin(3 * np.arctan2(v, u))
    nucleus = np.hypot((x - 3) / 12, (y + 2) / 9) <= 1
    mask = _masks_from(nucleus, cell)
    crop = rng.gamma(4.0, 50.0, (5, S, S)).astype(np.float32)
    crop[:, mask == 1] += 300 * np.arange(1, 6)[:, None]
    return crop, mask


def _table(crop: np.ndarray, mask: np.ndarray, **kwargs) -> pd.Series:
    return classical_features(crop[None], mask[None], **kwargs).iloc[0]


def test_disc_cell_area_intensity_and_shape() -> None:
    crop, mask = _disc_cell()
    row = _table(crop, mask)
    n_nuc, n_cyto = np.count_nonzero(mask == 1), np.count_nonzero(mask == 2)
    assert row["Nuclei_AreaShape_Area"] == n_nuc
    assert row["Cells_AreaShape_Area"] == n_nuc + n_cyto
    for c, ch in enumerate(CHANNELS):
        assert row[f"Nuclei_Intensity_MeanIntensity_{ch}"] == pytest.approx(NUC[c], rel=1e-12)
        assert row[f"Cytoplasm_Intensity_MeanIntensity_{ch}"] == pytest.approx(CYTO[c], rel=1e-12)
        cell_mean = (n_nuc * NUC[c] + n_cyto * CYTO[c]) / (n_nuc + n_cyto)
        assert row[f"Cells_Intensity_MeanIntensity_{ch}"] == pytest.approx(cell_mean, rel=1e-12)
        assert row[f"Nuclei_Intensity_IntegratedIntensity_{ch}"] == n_nuc * NUC[c]
        assert row[f"Cytoplasm_Intensity_IntegratedIntensity_{ch}"] == n_cyto * CYTO[c]
        assert row[f"Cells_Intensity_IntegratedIntensity_{ch}"] == n_nuc * NUC[c] + n_cyto * CYTO[c]
        assert row[f"Nuclei_Intensity_StdIntensity_{ch}"] == 0
        assert row[f"Nuclei_Intensity_MADIntensity_{ch}"] == 0
        assert row[f"Cells_Intensity_MinIntensity_{ch}"] == min(NUC[c], CYTO[c])
        assert row[f"Cells_Intensity_MaxIntensity_{ch}"] == max(NUC[c], CYTO[c])
        # Concentric and symmetric: the intensity-weighted centroid is the centroid.
        assert row[f"Cells_Intensity_MassDisplacement_{ch}"] == pytest.approx(0, abs=1e-9)
        fracs = [row[f"Cells_RadialDistribution_FracAtD_{ch}_{k}of4"] for k in range(1, 5)]
        assert sum(fracs) == pytest.approx(1.0, abs=1e-12)
        assert row[f"Cells_Granularity_1_{ch}"] == 0  # flat compartments: nothing to remove
    for obj in ("Nuclei", "Cells"):
        assert row[f"{obj}_AreaShape_Eccentricity"] < 0.05
        # regionprops' convex area counts pixels on the hull boundary: 0.93 (r=10), 0.97 (r=25).
        assert 0.9 < row[f"{obj}_AreaShape_Solidity"] <= 1.0
        assert row[f"{obj}_AreaShape_Compactness"] == pytest.approx(1.0, abs=0.02)
        assert 0.85 < row[f"{obj}_AreaShape_FormFactor"] <= 1.05
        assert row[f"{obj}_AreaShape_MajorAxisLength"] == pytest.approx(
            row[f"{obj}_AreaShape_MinorAxisLength"], rel=0.01
        )
    assert row["Cells_AreaShape_MaxFeretDiameter"] == pytest.approx(51, abs=1)
    # DNA is in the nucleus: its radial profile falls outwards, ER's rises.
    assert (
        row["Cells_RadialDistribution_MeanFrac_DNA_1of4"]
        > 1
        > row["Cells_RadialDistribution_MeanFrac_DNA_4of4"]
    )
    assert (
        row["Cells_RadialDistribution_FracAtD_ER_4of4"]
        > row["Cells_RadialDistribution_FracAtD_ER_1of4"]
    )


def test_ellipse_is_eccentric() -> None:
    yy, xx = np.mgrid[:S, :S] - S // 2
    mask = _masks_from(
        (xx / 8.0) ** 2 + (yy / 8.0) ** 2 <= 1, (xx / 40.0) ** 2 + (yy / 12.0) ** 2 <= 1
    )
    crop = np.ones((5, S, S), dtype=np.float32)
    row = _table(crop, mask)
    assert row["Cells_AreaShape_Eccentricity"] > 0.9
    assert row["Nuclei_AreaShape_Eccentricity"] < 0.05
    assert row["Cells_AreaShape_MajorAxisLength"] == pytest.approx(80, abs=2)
    assert row["Cells_AreaShape_MinorAxisLength"] == pytest.approx(24, abs=2)
    assert row["Cells_AreaShape_Compactness"] > 1.5


def test_shape_matches_regionprops() -> None:
    _, mask = _irregular_cell()
    row = _table(np.ones((5, S, S), np.float32), mask)
    for obj, binary in (("Nuclei", mask == 1), ("Cells", mask > 0)):
        props = regionprops(binary.astype(np.uint8))[0]
        expected = {
            "Area": props.area,
            "Perimeter": props.perimeter,
            "Eccentricity": props.eccentricity,
            "Solidity": props.solidity,
            "Extent": props.extent,
            "MajorAxisLength": props.axis_major_length,
            "MinorAxisLength": props.axis_minor_length,
            "EquivalentDiameter": props.equivalent_diameter_area,
        }
        for name, value in expected.items():
            assert row[f"{obj}_AreaShape_{name}"] == pytest.approx(value, rel=1e-9), name
        hu = [row[f"{obj}_AreaShape_HuMoment_{k}"] for k in range(7)]
        np.testing.assert_allclose(hu, props.moments_hu, rtol=1e-6, atol=1e-14)
        assert row[f"{obj}_AreaShape_MaxFeretDiameter"] == pytest.approx(
            props.feret_diameter_max, abs=1.0
        )


def test_intensity_statistics_match_numpy() -> None:
    crop, mask = _irregular_cell(seed=3)
    row = _table(crop, mask)
    for comp, sel in (("Nuclei", mask == 1), ("Cells", mask > 0), ("Cytoplasm", mask == 2)):
        for c, ch in enumerate(CHANNELS):
            x = crop[c][sel].astype(np.float64)
            med = np.median(x)
            expected = {
                "MeanIntensity": x.mean(),
                "StdIntensity": x.std(),
                "MedianIntensity": med,
                "MADIntensity": np.median(np.abs(x - med)),
                "MinIntensity": x.min(),
                "MaxIntensity": x.max(),
                "UpperQuartileIntensity": np.percentile(x, 75),
                "LowerQuartileIntensity": np.percentile(x, 25),
                "IntegratedIntensity": x.sum(),
            }
            for name, value in expected.items():
                assert row[f"{comp}_Intensity_{name}_{ch}"] == pytest.approx(value, rel=1e-9)


def test_correlation_and_mass_displacement() -> None:
    crop, mask = _irregular_cell(seed=4)
    crop[1] = crop[0]  # ER = DNA
    crop[2] = 1000 - crop[0]  # RNA = -DNA
    crop[3] = 7.0  # AGP constant
    yy, xx = np.mgrid[:S, :S]
    crop[4] = np.where(xx > S // 2 + 10, 500.0, 0.0)  # Mito only on one side
    row = _table(crop, mask)
    assert row["Cells_Correlation_Correlation_DNA_ER"] == pytest.approx(1.0)
    assert row["Cells_Correlation_Correlation_DNA_RNA"] == pytest.approx(-1.0)
    assert row["Cells_Correlation_Correlation_DNA_AGP"] == 0
    assert row["Cells_Intensity_MassDisplacement_AGP"] == pytest.approx(0, abs=1e-9)
    assert row["Cells_Intensity_MassDisplacement_Mito"] > 10


def test_texture_contrast_checkerboard_vs_flat() -> None:
    crop, mask = _disc_cell(r_nuc=15, r_cell=30)
    flat = _table(crop, mask)
    yy, xx = np.mgrid[:S, :S]
    crop[:, mask == 1] = np.where((yy + xx) % 2 == 0, 50.0, 150.0)[mask == 1]
    checker = _table(crop, mask)
    for ch in CHANNELS:
        assert flat[f"Nuclei_Texture_Contrast_{ch}_3_00"] == 0
        assert flat[f"Nuclei_Texture_Correlation_{ch}_3_00"] == 1  # skimage's uniform convention
        assert flat[f"Nuclei_Texture_AngularSecondMoment_{ch}_3_00"] == 1
        assert checker[f"Nuclei_Texture_Contrast_{ch}_3_00"] > 50
        assert (
            checker[f"Nuclei_Texture_Entropy_{ch}_3_00"] > flat[f"Nuclei_Texture_Entropy_{ch}_3_00"]
        )
        # The cytoplasm did not change.
        assert (
            checker[f"Cytoplasm_Texture_Contrast_{ch}_3_00"]
            == flat[f"Cytoplasm_Texture_Contrast_{ch}_3_00"]
        )


def test_glcm_of_a_compartment_matches_skimage_outside_level_trick() -> None:
    rng = np.random.default_rng(2)
    levels = rng.integers(0, 16, (1, 24, 30))
    inside = np.zeros((24, 30), dtype=bool)
    inside[3:20, 4:27] = True
    inside[9:13, 10:16] = False
    compartment = np.where(inside, 0, -1)
    shifted = np.where(inside, levels[0] + 1, 0).astype(np.uint8)  # level 0 = outside
    for offset, angle in (((0, 3), 0.0), ((3, 0), np.pi / 2)):
        counts = _glcm_counts(levels, compartment, 1, offset)[0, 0]
        ref = graycomatrix(shifted, [3], [angle], levels=17, symmetric=True)[1:, 1:, 0, 0]
        np.testing.assert_array_equal(counts, ref)
        feats, _ = _haralick(counts)
        p = (ref / ref.sum())[:, :, None, None]
        for k, prop in enumerate(("contrast", "correlation", "ASM", "homogeneity")):
            assert feats[k] == pytest.approx(graycoprops(p, prop)[0, 0], rel=1e-9)
        assert feats[4] == pytest.approx(graycoprops(p, "entropy")[0, 0] / np.log(2), rel=1e-9)


def test_granularity_speckled_above_flat() -> None:
    crop, mask = _disc_cell()
    flat = _table(crop, mask)
    rng = np.random.default_rng(5)
    speckles = (rng.random((S, S)) < 0.05) & (mask > 0)
    crop[:, speckles] += 400.0
    speckled = _table(crop, mask)
    for ch in CHANNELS:
        assert flat[f"Cells_Granularity_1_{ch}"] == 0
        assert speckled[f"Cells_Granularity_1_{ch}"] > 0.05
        spectrum = [speckled[f"Cells_Granularity_{s}_{ch}"] for s in (1, 2, 3)]
        assert all(0 <= g <= 1 for g in spectrum)
        assert sum(spectrum) <= 1


def test_columns_are_stable_and_documented() -> None:
    crop, mask = _irregular_cell()
    first = classical_features(crop[None], mask[None])
    second = classical_features(np.stack([crop, crop]), np.stack([mask, mask]))
    names = feature_names()
    assert list(first.columns) == list(second.columns) == names
    assert len(names) == len(set(names)) == 317
    assert not any(n.startswith("Metadata_") for n in names)
    assert {n.split("_")[0] for n in names} == set(CLASSICAL_COMPARTMENTS)
    assert "Cytoplasm_Texture_Contrast_Mito_3_00" in names
    assert "Cells_RadialDistribution_FracAtD_Mito_1of4" in names
    assert "Cells_Correlation_Correlation_ER_Mito" in names
    assert "Cells_Granularity_3_AGP" in names
    assert sum(n.startswith("Nuclei_AreaShape_") for n in names) == len(SHAPE_FEATURES)
    other = feature_names(texture_distances=(1, 5), granularity_scales=(2, 4))
    assert "Nuclei_Texture_Entropy_DNA_5_00" in other and "Cells_Granularity_4_DNA" in other
    assert len(other) == 317 + 50 - 5
    table = classical_features(
        crop[None], mask[None], texture_distances=(1, 5), granularity_scales=(2, 4)
    )
    assert list(table.columns) == other
    empty = classical_features(np.zeros((0, 5, S, S), np.float32), np.zeros((0, S, S), np.uint8))
    assert list(empty.columns) == names and len(empty) == 0


def test_empty_cytoplasm_and_empty_mask_are_finite_zeros() -> None:
    crop, mask = _disc_cell()
    no_cyto = np.where(mask == 2, 0, mask).astype(np.uint8)
    table = classical_features(np.stack([crop, crop]), np.stack([no_cyto, np.zeros_like(mask)]))
    assert np.isfinite(table.to_numpy()).all()
    assert all(dtype == np.float64 for dtype in table.dtypes)
    cyto = [c for c in table.columns if c.startswith("Cytoplasm_")]
    assert (table.loc[0, cyto] == 0).all()
    assert table.loc[0, "Nuclei_AreaShape_Area"] == table.loc[0, "Cells_AreaShape_Area"] > 0
    assert (table.loc[1] == 0).all()


def test_row_order_is_preserved() -> None:
    a, b, c = _irregular_cell(seed=1), _disc_cell(), _irregular_cell(seed=2, shift=(5, -3))
    table = classical_features(np.stack([a[0], b[0], c[0]]), np.stack([a[1], b[1], c[1]]))
    assert list(table.index) == [0, 1, 2]
    for i, (crop, mask) in enumerate((a, b, c)):
        np.testing.assert_array_equal(table.iloc[i].to_numpy(), _table(crop, mask).to_numpy())


def test_translation_and_rotation_invariance() -> None:
    crop, mask = _irregular_cell(seed=6)
    moved_crop, moved_mask = _irregular_cell(seed=6, shift=(4, -3))
    # Same pixels, moved: regenerate the intensities by shifting the original crop.
    moved_crop = np.roll(crop, (4, -3), axis=(1, 2))
    assert np.array_equal(moved_mask, np.roll(mask, (4, -3), axis=(0, 1)))
    base = _table(crop, mask).to_numpy()
    moved = _table(moved_crop, moved_mask).to_numpy()
    np.testing.assert_allclose(moved, base, rtol=1e-9, atol=1e-9)
    rotated = _table(np.rot90(crop, 1, axes=(1, 2)).copy(), np.rot90(mask).copy()).to_numpy()
    np.testing.assert_allclose(rotated, base, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    ("crops", "masks", "kwargs", "name"),
    [
        (np.zeros((5, S, S)), np.zeros((1, S, S), np.uint8), {}, "crops"),
        (np.zeros((1, 4, S, S)), np.zeros((1, S, S), np.uint8), {}, "crops"),
        (np.zeros((1, 5, S, S), complex), np.zeros((1, S, S), np.uint8), {}, "crops"),
        (np.zeros((1, 5, S, S)), np.zeros((2, S, S), np.uint8), {}, "masks"),
        (np.zeros((1, 5, S, S)), np.zeros((1, S, S - 1), np.uint8), {}, "masks"),
        (np.zeros((1, 5, S, S)), np.full((1, S, S), 3, np.uint8), {}, "masks"),
        (np.zeros((1, 5, S, S)), np.zeros((1, S, S), np.float32), {}, "masks"),
        (
            np.zeros((1, 5, S, S)),
            np.zeros((1, S, S), np.uint8),
            {"texture_distances": (0,)},
            "texture_distances",
        ),
        (
            np.zeros((1, 5, S, S)),
            np.zeros((1, S, S), np.uint8),
            {"texture_distances": ()},
            "texture_distances",
        ),
        (
            np.zeros((1, 5, S, S)),
            np.zeros((1, S, S), np.uint8),
            {"granularity_scales": (2, 1)},
            "granularity_scales",
        ),
        (
            np.zeros((1, 5, S, S)),
            np.zeros((1, S, S), np.uint8),
            {"channels": ("DNA",) * 5},
            "channels",
        ),
    ],
)
def test_bad_inputs_name_the_argument(crops, masks, kwargs, name) -> None:
    with pytest.raises(ValueError, match=name):
        classical_features(crops, masks, **kwargs)


def test_non_finite_intensity_inside_the_cell_is_rejected() -> None:
    crop, mask = _disc_cell()
    crop[2, S // 2, S // 2] = np.nan
    with pytest.raises(ValueError, match=r"crops\[1\]"):
        classical_features(np.stack([_disc_cell()[0], crop]), np.stack([mask, mask]))
    crop[2, S // 2, S // 2] = 1.0
    crop[0, 0, 0] = np.inf  # outside the cell: ignored
    crop[1, S // 2 - 25, S // 2 - 25] = np.nan  # inside the cell's box, outside the cell
    assert np.isfinite(_table(crop, mask).to_numpy()).all()
