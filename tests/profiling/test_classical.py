"""Tests of morphoflow.profiling.classical: whole objects, CellProfiler's definitions and scaling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from skimage.measure import regionprops

from morphoflow.profiling.classical import (
    CLASSICAL_COMPARTMENTS,
    FEATURE_SET_VERSION,
    ClassicalExtractor,
    classical_extractor,
    classical_features,
    feature_names,
    feature_set_id,
    intensity_scale_for,
    site_features,
)
from morphoflow.screen.constants import CHANNELS

S = 128
NUC = np.array([1000.0, 200.0, 300.0, 400.0, 500.0])  # nucleus intensity per channel (counts)
CYTO = np.array([100.0, 600.0, 700.0, 800.0, 900.0])  # cytoplasm intensity per channel


def _disc_site(
    r_nuc: float = 10, r_cell: float = 25, size: int = S, centre: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One disc nucleus (label 7) in a disc cell (label 7), flat intensities NUC / CYTO."""
    cy, cx = centre if centre is not None else (size // 2, size // 2)
    yy, xx = np.mgrid[:size, :size]
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    nuclei = np.where(d2 <= r_nuc**2, 7, 0).astype(np.int32)
    cells = np.where(d2 <= r_cell**2, 7, 0).astype(np.int32)
    image = np.zeros((5, size, size), np.float32)
    image[:, cells > 0] = CYTO[:, None]
    image[:, nuclei > 0] = NUC[:, None]
    return image, nuclei, cells


def _textured_site(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three lobed cells with off-centre nuclei and gamma-noise intensities (12-bit)."""
    rng = np.random.default_rng(seed)
    size = 200
    yy, xx = np.mgrid[:size, :size].astype(float)
    nuclei = np.zeros((size, size), np.int32)
    cells = np.zeros((size, size), np.int32)
    for label, (cy, cx, angle) in enumerate(((50, 50, 0.3), (140, 60, 1.2), (100, 150, 2.0)), 1):
        y, x = yy - cy, xx - cx
        u, v = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
        cell = np.hypot(u / 34, v / 22) <= 1 + 0.15 * np.sin(3 * np.arctan2(v, u))
        cells[cell & (cells == 0)] = label
        nuclei[(np.hypot((x - 3) / 12, (y + 2) / 9) <= 1) & (cells == label)] = label
    image = rng.gamma(4.0, 50.0, (5, size, size)).astype(np.float32)
    image[:, nuclei > 0] += (300 * np.arange(1, 6))[:, None]
    return np.minimum(image, 4095), nuclei, cells


def test_disc_cell_area_intensity_in_cellprofiler_units() -> None:
    image, nuclei, cells = _disc_site()
    row = site_features(image, nuclei, cells).loc[7]
    n_nuc, n_cell = int((nuclei > 0).sum()), int((cells > 0).sum())
    assert row["Nuclei_AreaShape_Area"] == n_nuc
    assert row["Cells_AreaShape_Area"] == n_cell
    for c, ch in enumerate(CHANNELS):
        # uint16 data read as [0, 1]: counts / 65535 (CellProfiler's NamesAndTypes)
        assert row[f"Nuclei_Intensity_MeanIntensity_{ch}"] == pytest.approx(NUC[c] / 65535)
        assert row[f"Cytoplasm_Intensity_MeanIntensity_{ch}"] == pytest.approx(CYTO[c] / 65535)
        total = (n_nuc * NUC[c] + (n_cell - n_nuc) * CYTO[c]) / 65535
        assert row[f"Cells_Intensity_IntegratedIntensity_{ch}"] == pytest.approx(total)
        assert row[f"Nuclei_Intensity_StdIntensity_{ch}"] == pytest.approx(0, abs=1e-15)
        assert row[f"Cells_Intensity_MassDisplacement_{ch}"] == pytest.approx(0, abs=1e-9)
        fracs = [row[f"Cells_RadialDistribution_FracAtD_{ch}_{k}of4"] for k in range(1, 5)]
        assert sum(fracs) == pytest.approx(1.0, abs=1e-9)
    # CellProfiler 4 Compactness = Perimeter^2 / (4 pi Area), FormFactor its inverse
    for obj in ("Nuclei", "Cells"):
        p, a = row[f"{obj}_AreaShape_Perimeter"], row[f"{obj}_AreaShape_Area"]
        assert row[f"{obj}_AreaShape_Compactness"] == pytest.approx(p**2 / (4 * np.pi * a))
        assert row[f"{obj}_AreaShape_FormFactor"] == pytest.approx(4 * np.pi * a / p**2)
        assert row[f"{obj}_AreaShape_Eccentricity"] < 0.1
    # DNA is in the nucleus: its radial profile falls outwards; ER's rises
    assert row["Cells_RadialDistribution_MeanFrac_DNA_1of4"] > 1
    assert row["Cells_RadialDistribution_MeanFrac_ER_4of4"] > 1
    # 12-bit-range flat compartments: a single texture level, no contrast
    assert row["Nuclei_Texture_Contrast_DNA_3_00_256"] == 0
    assert row["Nuclei_Texture_AngularSecondMoment_DNA_3_00_256"] == pytest.approx(1.0)


def test_a_cell_larger_than_a_crop_is_measured_whole() -> None:
    """The bug of issue 15: a 128-px crop reported Area = 128^2 for a larger cell."""
    image, nuclei, cells = _disc_site(r_nuc=15, r_cell=90, size=240)
    row = site_features(image, nuclei, cells).loc[7]
    assert row["Cells_AreaShape_Area"] == (cells > 0).sum() > 128 * 128
    props = regionprops((cells > 0).astype(np.uint8))[0]
    assert row["Cells_AreaShape_MajorAxisLength"] == pytest.approx(props.axis_major_length)
    assert row["Cells_AreaShape_MaxFeretDiameter"] == pytest.approx(181, abs=1.5)


def test_shape_matches_regionprops_and_intensity_matches_numpy() -> None:
    image, nuclei, cells = _textured_site()
    table = site_features(image, nuclei, cells)
    assert list(table.index) == [1, 2, 3] and table.index.name == "ObjectNumber"
    for label in (1, 2, 3):
        row = table.loc[label]
        for obj, binary in (("Nuclei", nuclei == label), ("Cells", cells == label)):
            props = regionprops(binary.astype(np.uint8))[0]
            assert row[f"{obj}_AreaShape_Area"] == props.area
            assert row[f"{obj}_AreaShape_Perimeter"] == pytest.approx(props.perimeter)
            assert row[f"{obj}_AreaShape_Solidity"] == pytest.approx(props.solidity)
            assert row[f"{obj}_AreaShape_Eccentricity"] == pytest.approx(props.eccentricity)
            np.testing.assert_allclose(
                [row[f"{obj}_AreaShape_HuMoment_{k}"] for k in range(7)],
                props.moments_hu,
                rtol=1e-6,
                atol=1e-12,
            )
        cyto = (cells == label) & (nuclei == 0)
        for comp, sel in (
            ("Nuclei", nuclei == label),
            ("Cells", cells == label),
            ("Cytoplasm", cyto),
        ):
            for c, ch in enumerate(CHANNELS):
                x = np.sort(image[c][sel].astype(np.float64) / 65535)
                assert row[f"{comp}_Intensity_MeanIntensity_{ch}"] == pytest.approx(x.mean())
                assert row[f"{comp}_Intensity_StdIntensity_{ch}"] == pytest.approx(x.std())
                assert row[f"{comp}_Intensity_MaxIntensity_{ch}"] == x[-1]
                # CellProfiler's quartile position n * q (not numpy's (n - 1) * q)
                pos = x.size * 0.75
                lo = int(pos)
                expected = x[lo] + (pos - lo) * (x[min(lo + 1, x.size - 1)] - x[lo])
                assert row[f"{comp}_Intensity_UpperQuartileIntensity_{ch}"] == pytest.approx(
                    expected
                )


def test_pearson_correlation_and_flat_channel() -> None:
    image, nuclei, cells = _textured_site(seed=4)
    image[1] = image[0]  # ER = DNA
    image[2] = 5000 - image[0]  # RNA = -DNA
    image[3] = 700.0  # AGP flat: 0 up to rounding, as numpy.corrcoef in CellProfiler gives
    row = site_features(image, nuclei, cells).loc[2]
    assert row["Cells_Correlation_Correlation_DNA_ER"] == pytest.approx(1.0)
    assert row["Cells_Correlation_Correlation_DNA_RNA"] == pytest.approx(-1.0)
    assert abs(row["Cells_Correlation_Correlation_DNA_AGP"]) < 1e-9


def test_granularity_speckled_above_flat() -> None:
    image, nuclei, cells = _disc_site(r_nuc=20, r_cell=50, size=200)
    flat = site_features(image, nuclei, cells).loc[7]
    rng = np.random.default_rng(5)
    speckles = rng.random(cells.shape) < 0.03
    image[:, speckles & (cells > 0)] += 3000.0
    speckled = site_features(image, nuclei, cells).loc[7]
    for ch in CHANNELS:
        assert speckled[f"Cells_Granularity_1_{ch}"] > flat[f"Cells_Granularity_1_{ch}"]


def test_columns_are_stable_and_named_like_cellprofiler() -> None:
    names = feature_names()
    extended = feature_names("extended")
    assert len(names) == len(set(names)) == 315
    assert len(extended) == len(set(extended)) == 1848
    assert set(names) <= set(extended)
    assert not any(n.startswith("Metadata_") for n in extended)
    assert {n.split("_")[0] for n in extended} == set(CLASSICAL_COMPARTMENTS)
    for name in (
        "Nuclei_Texture_AngularSecondMoment_DNA_3_00_256",
        "Cells_RadialDistribution_FracAtD_Mito_1of4",
        "Cells_Correlation_Correlation_ER_Mito",
        "Cells_Granularity_3_AGP",
        "Cells_AreaShape_MaxFeretDiameter",
    ):
        assert name in names
    assert "Cytoplasm_Texture_InfoMeas2_RNA_3_03_256" in extended
    assert "Cells_Granularity_16_DNA" in extended
    assert "Cells_AreaShape_Zernike_9_9" in extended
    assert "Cells_Correlation_Manders_Mito_AGP" in extended
    # nothing positional: a profile must not depend on where a cell sits in the field
    assert not any("Location" in n or "Center_" in n or "BoundingBoxM" in n for n in extended)
    image, nuclei, cells = _textured_site()
    assert list(site_features(image, nuclei, cells).columns) == names
    assert feature_set_id() == f"{FEATURE_SET_VERSION}:default"
    assert classical_extractor("extended").feature_set_id.endswith(":extended")


def test_crop_interface_equals_the_site_for_uncut_cells() -> None:
    image, nuclei, cells = _textured_site(seed=2)
    site = site_features(image, nuclei, cells)
    crops, masks = [], []
    for label, (cy, cx) in ((1, (50, 50)), (3, (100, 150))):
        box = (slice(cy, cy + 128), slice(cx, cx + 128))  # in the 64-px padded site
        box_cells = np.pad(cells, 64)[box]
        box_nuclei = np.pad(nuclei, 64)[box]
        crop = np.pad(image, ((0, 0), (64, 64), (64, 64)))[(slice(None), *box)]
        mask = np.zeros((128, 128), np.uint8)
        mask[box_cells == label] = 2
        mask[box_nuclei == label] = 1
        assert mask[0].max() == mask[-1].max() == mask[:, 0].max() == mask[:, -1].max() == 0
        crops.append(np.where(box_cells == label, crop, 0.0))
        masks.append(mask)
    table = classical_features(np.stack(crops), np.stack(masks))
    assert list(table.index) == [0, 1]
    shape = [c for c in table.columns if "AreaShape" in c or "Intensity" in c]
    np.testing.assert_allclose(table.loc[0, shape], site.loc[1, shape], rtol=1e-9)
    np.testing.assert_allclose(table.loc[1, shape], site.loc[3, shape], rtol=1e-9)


def test_objects_order_and_missing_cytoplasm() -> None:
    image, nuclei, cells = _textured_site()
    cells = cells.copy()
    cells[cells == 2] = 0
    cells[nuclei == 2] = 2  # cell 2 is its nucleus: no cytoplasm
    table = site_features(image, nuclei, cells, objects=[3, 2, 1])
    assert list(table.index) == [3, 2, 1]
    cyto = [c for c in table.columns if c.startswith("Cytoplasm_")]
    assert table.loc[2, cyto].isna().all()
    assert table.loc[3, cyto].notna().any()
    assert table.loc[2, "Nuclei_AreaShape_Area"] == table.loc[2, "Cells_AreaShape_Area"]
    one = site_features(image, nuclei, cells, objects=[3])
    pd.testing.assert_series_equal(one.loc[3], table.loc[3])
    assert len(site_features(image, nuclei, cells, objects=[])) == 0


def test_intensity_scale() -> None:
    assert intensity_scale_for(np.uint16) == 1 / 65535
    assert intensity_scale_for(np.uint8) == 1 / 255
    assert intensity_scale_for(np.float32) == 1.0
    image, nuclei, cells = _disc_site()
    row = site_features(image / 65535, nuclei, cells, intensity_scale=1.0).loc[7]
    assert row["Nuclei_Intensity_MeanIntensity_DNA"] == pytest.approx(NUC[0] / 65535)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"image": np.zeros((4, 8, 8))}, "image"),
        ({"image": np.zeros((5, 8, 8), complex)}, "image"),
        ({"nuclei": np.zeros((8, 9), np.int32)}, "nuclei"),
        ({"nuclei": np.zeros((8, 8), np.float32)}, "nuclei"),
        ({"cells": np.full((8, 8), -1, np.int32)}, "cells"),
        ({"objects": [1, 1]}, "objects"),
        ({"feature_set": "full"}, "feature_set"),
        ({"channels": ("DNA",) * 5}, "channels"),
        ({"intensity_scale": 0.0}, "intensity_scale"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, name) -> None:
    args = {
        "image": np.zeros((5, 8, 8)),
        "nuclei": np.zeros((8, 8), np.int32),
        "cells": np.zeros((8, 8), np.int32),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        site_features(**args)


@pytest.mark.parametrize(
    ("crops", "masks", "name"),
    [
        (np.zeros((5, S, S)), np.zeros((1, S, S), np.uint8), "crops"),
        (np.zeros((1, 5, S, S)), np.zeros((2, S, S), np.uint8), "masks"),
        (np.zeros((1, 5, S, S)), np.full((1, S, S), 3, np.uint8), "masks"),
    ],
)
def test_bad_crops_name_the_argument(crops, masks, name) -> None:
    with pytest.raises(ValueError, match=name):
        classical_features(crops, masks)


def test_non_finite_intensity_inside_an_object_is_rejected() -> None:
    image, nuclei, cells = _disc_site()
    image[2, S // 2, S // 2] = np.nan
    with pytest.raises(ValueError, match=r"non-finite.*\['RNA'\]"):
        site_features(image, nuclei, cells)
    image[2, S // 2, S // 2] = 1.0
    image[0, 0, 0] = np.inf  # outside every object: ignored
    assert np.isfinite(site_features(image, nuclei, cells).loc[7, "Cells_AreaShape_Area"])
    assert isinstance(classical_features, ClassicalExtractor)


@pytest.mark.parametrize("feature_set", ["default", "extended"])
def test_tiny_objects_give_nan_not_inf_and_no_numpy_warning(feature_set) -> None:
    # 1-px, 2-px, 2x2 and 1x5 objects: perimeter, variance or moments are 0 -> undefined
    nuc = np.zeros((40, 40), np.int32)
    nuc[5, 5] = 1
    nuc[10, 10:12] = 2
    nuc[20:22, 20:22] = 3
    nuc[30, 30:35] = 4
    cel = nuc.copy()
    cel[10, 12] = 2  # a one-pixel cytoplasm
    cel[4:7, 4:7] = np.where(nuc[4:7, 4:7] == 0, 1, nuc[4:7, 4:7])
    image = np.random.default_rng(0).random((5, 40, 40))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        table = site_features(image, nuc, cel, feature_set=feature_set, intensity_scale=1.0)
    assert not np.isinf(table.to_numpy()).any(), list(
        table.columns[np.isinf(table.to_numpy()).any(0)]
    )
    assert table["Nuclei_AreaShape_FormFactor"].isna().loc[[1, 2]].all()


def test_channel_names_with_spaces_and_labels_above_int32_are_refused() -> None:
    image, nuclei, cells = _disc_site()
    with pytest.raises(ValueError, match="spaces"):
        site_features(image, nuclei, cells, channels=("DNA DAPI", "ER", "RNA", "AGP", "Mito"))
    big = np.where(nuclei > 0, 2**31, 0).astype(np.uint32)
    with pytest.raises(ValueError, match="nuclei holds label 2147483648"):
        site_features(image, big, cells)
