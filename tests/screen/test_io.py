"""Tests of morphoflow.screen.io: one reader for images with channels, axis order from metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.io
import tifffile

from morphoflow.screen.errors import ImageReadError
from morphoflow.screen.io import channels_first, read_image, read_site, require_finite

H, W, C = 24, 32, 5


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    """A (C, H, W) uint16 stack whose channels all differ."""
    rng = np.random.default_rng(3)
    return rng.integers(0, 4000, (C, H, W)).astype(np.uint16)


def _write(path: Path, data: np.ndarray, **kwargs) -> Path:
    tifffile.imwrite(path, data, **kwargs)
    return path


# Each layout writes the same (C, H, W) stack; the reader must give it back channels first.
LAYOUTS = {
    # tifffile's default for (C, H, W): C pages, "shaped" metadata, axes QYX
    "channels_first_pages": lambda s: (s, {}),
    # tifffile's default for (H, W, C): H pages of (W, C) planes, axes QYX: sizes decide
    "channels_last_pages": lambda s: (np.moveaxis(s, 0, -1), {}),
    # one page with C contiguous samples: axes YXS (the issue's example)
    "channels_last_samples": lambda s: (
        np.moveaxis(s, 0, -1),
        {"photometric": "minisblack", "planarconfig": "contig"},
    ),
    "channels_last_samples_no_metadata": lambda s: (
        np.moveaxis(s, 0, -1),
        {"photometric": "minisblack", "planarconfig": "contig", "metadata": None},
    ),
    "planar_samples": lambda s: (s, {"photometric": "minisblack", "planarconfig": "separate"}),
    "pages_no_metadata": lambda s: (s, {"metadata": None}),
    "imagej_cyx": lambda s: (s, {"imagej": True, "metadata": {"axes": "CYX"}}),
    "imagej_zcyx_one_plane": lambda s: (s[None], {"imagej": True, "metadata": {"axes": "ZCYX"}}),
    "ome_cyx": lambda s: (s, {"ome": True, "metadata": {"axes": "CYX"}}),
    "ome_yxs": lambda s: (
        np.moveaxis(s, 0, -1),
        {
            "ome": True,
            "photometric": "minisblack",
            "planarconfig": "contig",
            "metadata": {"axes": "YXS"},
        },
    ),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_reads_channels_first(tmp_path: Path, stack: np.ndarray, layout: str) -> None:
    data, kwargs = LAYOUTS[layout](stack)
    loaded = read_image(_write(tmp_path / f"{layout}.tif", data, **kwargs))
    assert loaded.shape == (C, H, W)
    assert loaded.dtype == np.uint16
    np.testing.assert_array_equal(loaded, stack)


def test_channels_last_256_site_is_read_channels_first(tmp_path: Path) -> None:
    # The issue's example: a (256, 256, 5) site, tifffile series axes YXS.
    site = np.arange(256 * 256 * 5, dtype=np.uint32).reshape(256, 256, 5).astype(np.uint16)
    path = _write(tmp_path / "site.tif", site, photometric="minisblack", planarconfig="contig")
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "YXS"
    loaded = read_image(path)
    assert loaded.shape == (5, 256, 256)
    np.testing.assert_array_equal(loaded[0], site[..., 0])


def test_single_plane_and_singleton_axes_give_2d(tmp_path: Path, stack: np.ndarray) -> None:
    plane = stack[0]
    np.testing.assert_array_equal(read_image(_write(tmp_path / "a.tif", plane)), plane)
    one = _write(tmp_path / "b.tif", plane[None], imagej=True, metadata={"axes": "CYX"})
    np.testing.assert_array_equal(read_image(one), plane)
    np.testing.assert_array_equal(read_image(_write(tmp_path / "c.tif", plane[..., None])), plane)


def test_png_rgb_is_channels_last_by_format(tmp_path: Path, stack: np.ndarray) -> None:
    rgb = (np.moveaxis(stack[:3], 0, -1) // 16).astype(np.uint8)
    skimage.io.imsave(tmp_path / "rgb.png", rgb, check_contrast=False)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), np.moveaxis(rgb, -1, 0))


@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [
        ((5, 40, 5), {}),  # first and last axes both look like channels
        ((20, 20, 20), {}),  # no axis looks like channels
        ((6, 40, 6), {"metadata": None}),  # plain pages, no shape metadata
    ],
)
def test_ambiguous_shape_is_refused_naming_file_and_shape(
    tmp_path: Path, shape: tuple[int, ...], kwargs: dict
) -> None:
    path = _write(tmp_path / "odd.tif", np.zeros(shape, np.uint16), **kwargs)
    with pytest.raises(ImageReadError, match=r"odd\.tif") as info:
        read_image(path)
    assert str(shape) in str(info.value)


def test_z_stack_is_refused_not_read_as_channels(tmp_path: Path, stack: np.ndarray) -> None:
    path = _write(tmp_path / "zstack.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    with pytest.raises(ImageReadError, match=r"zstack\.tif.*'ZYX'"):
        read_image(path)


def test_channels_first_on_arrays() -> None:
    arr = np.zeros((4, 6, 3))
    assert channels_first(arr, "YXS", "x").shape == (3, 4, 6)
    assert channels_first(arr, "CYX", "x").shape == (4, 6, 3)
    assert channels_first(arr, "", "x").shape == (3, 4, 6)  # guessed: last axis
    assert channels_first(np.zeros((6, 4)), "XY", "x").shape == (4, 6)
    with pytest.raises(ImageReadError, match="in-memory"):
        channels_first(np.zeros((2, 3, 4, 5)), "TCYX", "in-memory")


def test_read_site_accepts_singleton_channel_files(tmp_path: Path, stack: np.ndarray) -> None:
    paths = []
    for c in range(C):
        paths.append(_write(tmp_path / f"c{c}.tif", stack[c][None], imagej=True))
    np.testing.assert_array_equal(read_site(paths), stack)


def test_require_finite_names_the_file() -> None:
    image = np.ones((4, 4), np.float32)
    assert require_finite(image, "ok.tif") is image
    assert require_finite(np.ones((2, 2), np.uint16), "int.tif").shape == (2, 2)
    image[1, 2], image[3, 3] = np.nan, np.inf
    with pytest.raises(ImageReadError, match=r"bad\.tif holds 2 NaN or infinite"):
        require_finite(image, "bad.tif")
