"""Ingestion of screen folders (load_data.csv + platemap, DeepProfiler index) and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from morphoflow.screen.constants import CHANNELS, METADATA_COLUMNS, PATH_COLUMNS
from morphoflow.screen.errors import ImageReadError, ScreenFormatError
from morphoflow.screen.io import read_image, read_site
from morphoflow.screen.table import fingerprint, load_screen, read_deepprofiler_index


def test_load_screen_builds_canonical_table(tiny_screen: Path) -> None:
    table = load_screen(tiny_screen)
    assert list(table.columns) == [*METADATA_COLUMNS, *PATH_COLUMNS]
    assert len(table) == 6
    row = table[(table.Metadata_Plate == "P1") & (table.Metadata_Well == "A02")].iloc[0]
    assert row.Metadata_Treatment == "cpd_a"
    assert row.Metadata_MoA == "moa_x"
    assert row.Metadata_ControlType == ""
    assert row.Path_DNA == "images/P1/P1_A02_s1_DNA.tif"
    controls = table[table.Metadata_ControlType == "negcon"]
    assert set(controls.Metadata_Treatment) == {"DMSO"}
    assert table.Metadata_Site.dtype == np.int64


def test_read_site_returns_channels_in_canonical_order(tiny_screen: Path) -> None:
    row = load_screen(tiny_screen).iloc[0]
    site = read_site(row.to_dict(), root=tiny_screen)
    assert site.shape == (5, 32, 32)
    assert site.dtype == np.uint16
    for index, channel in enumerate(CHANNELS):
        np.testing.assert_array_equal(
            site[index], tifffile.imread(tiny_screen / row[f"Path_{channel}"])
        )


@pytest.mark.parametrize("compression", [None, "lzw", "zlib", "zstd", "packbits"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_read_image_handles_compressions_and_bit_depths(
    tmp_path: Path, compression: str | None, dtype: type
) -> None:
    rng = np.random.default_rng(1)
    high = 255 if dtype is np.uint8 else 4095  # 12-bit data in a 16-bit container
    image = rng.integers(0, high, (40, 30)).astype(dtype)
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, image, compression=compression)
    loaded = read_image(path)
    assert loaded.dtype == dtype
    np.testing.assert_array_equal(loaded, image)


def test_deepprofiler_index_is_ingested(tiny_screen: Path) -> None:
    table = load_screen(tiny_screen)
    index = pd.DataFrame(
        {
            "Metadata_Plate": table.Metadata_Plate,
            "Metadata_Well": table.Metadata_Well,
            "Metadata_Site": table.Metadata_Site,
            "Plate_Map_Name": "map1",
            "Treatment": table.Metadata_Treatment,
            "Replicate": 1,
            **{c: table[f"Path_{c}"] for c in CHANNELS},
        }
    )
    index.to_csv(tiny_screen / "index.csv", index=False)
    moa = pd.read_csv(tiny_screen / "moa.csv", dtype=str, keep_default_na=False)
    dp = read_deepprofiler_index(tiny_screen / "index.csv", moa=moa, control_values=["DMSO"])
    pd.testing.assert_frame_equal(
        dp.drop(columns="Metadata_Source"), table.drop(columns="Metadata_Source")
    )
    # load_screen falls back to index.csv when there is no load_data.csv
    (tiny_screen / "load_data.csv").unlink()
    assert len(load_screen(tiny_screen)) == len(table)


def test_fingerprint_changes_with_content(tiny_screen: Path) -> None:
    table = load_screen(tiny_screen)
    first = fingerprint(table, tiny_screen)
    assert first == fingerprint(table.sample(frac=1, random_state=0), tiny_screen)
    tifffile.imwrite(tiny_screen / table.Path_DNA[0], np.zeros((8, 8), np.uint16))
    assert fingerprint(table, tiny_screen) != first


# --- bad input: each gives one clear error naming the file / row -------------------------


def test_corrupt_tiff_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.tif"
    path.write_bytes(b"II*\x00garbage-not-a-tiff")
    with pytest.raises(ImageReadError, match="broken.tif"):
        read_image(path)


def test_truncated_tiff_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64), compression="zlib")
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ImageReadError, match="cut.tif"):
        read_image(path)


def test_missing_channel_file_names_the_file(tiny_screen: Path) -> None:
    row = load_screen(tiny_screen).iloc[0]
    (tiny_screen / row.Path_ER).unlink()
    with pytest.raises(ImageReadError, match=r"P1_A01_s1_ER\.tif"):
        read_site(row.to_dict(), root=tiny_screen)


def test_wrong_shape_between_channels_names_both_files(tiny_screen: Path) -> None:
    row = load_screen(tiny_screen).iloc[0]
    tifffile.imwrite(tiny_screen / row.Path_Mito, np.zeros((16, 32), np.uint16))
    with pytest.raises(ImageReadError, match=r"Mito.*\(16, 32\).*DNA.*\(32, 32\)"):
        read_site(row.to_dict(), root=tiny_screen)


def test_path_escaping_root_is_refused(tiny_screen: Path, edit_csv) -> None:
    def escape(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[2, "PathName_OrigRNA"] = "../../etc"
        return frame

    edit_csv(tiny_screen / "load_data.csv", escape)
    with pytest.raises(ScreenFormatError, match=r"load_data.csv line 4.*escapes the data root"):
        load_screen(tiny_screen)


def test_platemap_well_without_images_is_refused(tiny_screen: Path, edit_csv) -> None:
    edit_csv(
        tiny_screen / "platemap.csv",
        lambda f: pd.concat(
            [
                f,
                pd.DataFrame(
                    [
                        {
                            "Metadata_Plate": "P2",
                            "Metadata_Well": "C03",
                            "Metadata_Treatment": "cpd_c",
                            "Metadata_ControlType": "",
                        }
                    ]
                ),
            ],
            ignore_index=True,
        ),
    )
    with pytest.raises(
        ScreenFormatError, match=r"platemap.csv: 1 well\(s\) have no images.*line\(s\) 8.*C03"
    ):
        load_screen(tiny_screen)


def test_site_without_platemap_entry_is_refused(tiny_screen: Path, edit_csv) -> None:
    edit_csv(tiny_screen / "platemap.csv", lambda f: f[f.Metadata_Well != "B01"])
    with pytest.raises(ScreenFormatError, match=r"site\(s\) have no entry in .*platemap.csv"):
        load_screen(tiny_screen)


def test_missing_columns_are_named(tiny_screen: Path, edit_csv) -> None:
    edit_csv(tiny_screen / "load_data.csv", lambda f: f.drop(columns=["FileName_OrigAGP"]))
    with pytest.raises(
        ScreenFormatError, match=r"missing required column\(s\) \['FileName_OrigAGP'\]"
    ):
        load_screen(tiny_screen)


def test_non_integer_site_is_named(tiny_screen: Path, edit_csv) -> None:
    def bad_site(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[1, "Metadata_Site"] = "one"
        return frame

    edit_csv(tiny_screen / "load_data.csv", bad_site)
    with pytest.raises(ScreenFormatError, match=r"Metadata_Site is not an integer on line\(s\) 3"):
        load_screen(tiny_screen)


def test_missing_screen_folder_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ScreenFormatError, match="simulate-screen"):
        load_screen(tmp_path / "nowhere")
