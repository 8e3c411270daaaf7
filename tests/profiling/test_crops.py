"""Single-cell crops: centring, edges, masks, neighbour masking, storage; cells and illumination."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from morphoflow.profiling.cells import segment_cells
from morphoflow.profiling.crops import crop_cells, load_site_crops, save_site_crops
from morphoflow.profiling.illumination import compress_8bit, correct, illumination_function
from morphoflow.simulate import render_site


def _two_cells() -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    image = np.zeros((5, 64, 64), np.float32)
    image[:] = np.arange(64, dtype=np.float32)[None, None, :]  # column index as intensity
    nuclei = np.zeros((64, 64), np.int32)
    cells = np.zeros((64, 64), np.int32)
    cells[20:41, 10:31] = 1
    nuclei[25:36, 15:26] = 1  # centre (30, 20) as (y, x)
    cells[20:41, 31:52] = 2
    nuclei[25:36, 36:47] = 2  # centre (30, 41)
    centres = pd.DataFrame(
        {
            "ObjectNumber": [1, 2],
            "Nuclei_Location_Center_X": [20.0, 41.0],
            "Nuclei_Location_Center_Y": [30.0, 30.0],
        }
    )
    return image, nuclei, cells, centres


def test_crop_is_centred_on_the_nucleus_with_own_masks() -> None:
    image, nuclei, cells, centres = _two_cells()
    site = crop_cells(image, nuclei, cells, centres, size=16, mask_neighbours=False)
    assert site.crops.shape == (2, 5, 16, 16) and site.masks.shape == (2, 16, 16)
    # crop of cell 1 spans columns 12..27 (x = 20 - 8 ... + 16)
    np.testing.assert_array_equal(site.crops[0, 0, 0], np.arange(12, 28, dtype=np.float32))
    assert site.masks[0, 8, 8] == 1  # centre pixel is this cell's nucleus
    assert set(np.unique(site.masks[0])) == {1, 2}  # nucleus + cytoplasm inside the box
    assert site.objects["Metadata_CropEdgeFraction"].tolist() == [0.0, 0.0]


def test_neighbours_are_masked_out() -> None:
    image, nuclei, cells, centres = _two_cells()
    site = crop_cells(image, nuclei, cells, centres, size=32, mask_neighbours=True)
    # cell 2 covers rows 20..40, columns 31..51; cell 1's box is rows 14..45, columns 4..35,
    # so cell 2 shows at crop rows 6..26, columns 27..31: zeroed; background around it is not
    assert np.all(site.crops[0, :, 6:27, 27:] == 0)
    assert np.all(site.masks[0][6:27, 27:] == 0)
    assert np.all(site.crops[0, 0, 30, 27:] > 0)
    unmasked = crop_cells(image, nuclei, cells, centres, size=32, mask_neighbours=False)
    assert np.all(unmasked.crops[0, 0, 10, 27:] > 0)


def test_edge_cells_are_zero_padded_or_skipped() -> None:
    image = np.ones((5, 40, 40), np.float32)
    nuclei = np.zeros((40, 40), np.int32)
    nuclei[0:5, 0:5] = 1
    centres = pd.DataFrame(
        {"ObjectNumber": [1], "Nuclei_Location_Center_X": [2.0], "Nuclei_Location_Center_Y": [2.0]}
    )
    site = crop_cells(image, nuclei, nuclei.copy(), centres, size=16, edge="pad")
    # box rows/cols -6..9: 6 of 16 outside on each axis -> inside 10 x 10 of 256
    assert site.objects["Metadata_CropEdgeFraction"].iloc[0] == pytest.approx(1 - 100 / 256)
    assert np.all(site.crops[0, :, :6, :] == 0) and np.all(site.crops[0, :, 6:, 6:] == 1)
    assert np.all(site.masks[0, :6, :] == 0)
    assert len(crop_cells(image, nuclei, nuclei.copy(), centres, size=16, edge="skip")) == 0


def test_bad_arguments_are_named() -> None:
    image, nuclei, cells, centres = _two_cells()
    with pytest.raises(ValueError, match="size"):
        crop_cells(image, nuclei, cells, centres, size=15)
    with pytest.raises(ValueError, match="edge"):
        crop_cells(image, nuclei, cells, centres, edge="wrap")
    with pytest.raises(ValueError, match="do not match"):
        crop_cells(image[:, :10], nuclei, cells, centres)


def test_storage_round_trip(tmp_path: Path) -> None:
    image, nuclei, cells, centres = _two_cells()
    site = crop_cells(image, nuclei, cells, centres, size=16)
    path = tmp_path / "P1" / "A01_s1.npz"
    save_site_crops(path, site)
    crops, masks, objects = load_site_crops(path)
    np.testing.assert_array_equal(crops, site.crops)  # small integers are exact in float16
    np.testing.assert_array_equal(masks, site.masks)
    assert objects.tolist() == [1, 2]
    assert [p.name for p in path.parent.iterdir()] == ["A01_s1.npz"]


def test_cells_contain_their_nuclei_on_a_simulated_site() -> None:
    image, truth = render_site(11, size=256, n_cells=20)
    cells = segment_cells(image, truth.astype(np.int32))
    assert set(np.unique(cells)) - {0} == set(np.unique(truth)) - {0}
    inside = truth > 0
    np.testing.assert_array_equal(cells[inside], truth[inside])
    areas_cells = np.bincount(cells.ravel())[1:]
    areas_nuclei = np.bincount(truth.ravel().astype(np.int64))[1:]
    assert np.median(areas_cells / np.maximum(areas_nuclei, 1)) > 1.5
    # regression: every nucleus grows a cytoplasm (dim-cytoplasm nuclei used to be engulfed)
    assert np.all(areas_cells > areas_nuclei)


def test_illumination_function_flattens_a_vignetted_plate() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    field = 1.0 - 0.4 * ((yy - 20) ** 2 + (xx - 40) ** 2) / 64**2
    images = [
        rng.poisson(200 * field[None] * np.ones((5, 1, 1))).astype(np.float32) for _ in range(20)
    ]
    illum = illumination_function(images, downscale=4, median_size=3)
    assert illum.shape == (5, 64, 64)
    np.testing.assert_allclose(illum.mean(axis=(1, 2)), 1.0, rtol=1e-5)
    raw_mean = np.mean(images, axis=0)[0]
    corrected_mean = np.mean([correct(im, illum) for im in images], axis=0)[0]
    # the plate's mean image is flat after correction (what remains is Poisson noise / sqrt(20))
    assert corrected_mean.std() < 0.3 * raw_mean.std()
    with pytest.raises(ValueError, match="shape"):
        correct(images[0][:, :10], illum)


def test_compress_8bit_stretches_between_percentiles() -> None:
    image = np.stack([np.linspace(0, 100, 101, dtype=np.float32).reshape(1, 101)] * 5)
    out = compress_8bit(image, low=[10] * 5, high=[90] * 5)
    assert out.dtype == np.uint8
    assert out[0, 0, 10] == 0 and out[0, 0, 90] == 255 and out[0, 0, 50] == 128
