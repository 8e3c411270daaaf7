"""Tests of morphoflow.segmentation.scoring and morphoflow.segmentation.screen."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from morphoflow.screen.constants import TRUTH_COLUMN
from morphoflow.segmentation.metrics import dsb_image_score
from morphoflow.segmentation.scoring import (
    evaluate_views,
    flat_metrics,
    iter_dna_and_truth,
    overlay_figure,
    require_truth,
    scores_table,
    split_by_plate,
)
from morphoflow.segmentation.screen import labels_relpath, segment_screen
from morphoflow.segmentation.segmenter import segment_nuclei
from morphoflow.segmentation.unet import load_unet, predict_probabilities
from morphoflow.simulate import render_site


def _plates_table() -> pd.DataFrame:
    rows = []
    for source, plates in (("s1", ["P1", "P3", "P2"]), ("s2", ["Q2", "Q1"])):
        for plate in plates:
            for well in ("A01", "B02"):
                rows.append(
                    {
                        "Metadata_Source": source,
                        "Metadata_Plate": plate,
                        "Metadata_Well": well,
                        "Metadata_Site": 1,
                    }
                )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- splits


def test_split_holds_out_the_last_plate_of_each_source() -> None:
    train, test = split_by_plate(_plates_table())
    assert sorted(test["Metadata_Plate"].unique()) == ["P3", "Q2"]
    assert sorted(train["Metadata_Plate"].unique()) == ["P1", "P2", "Q1"]
    assert not set(train["Metadata_Plate"]) & set(test["Metadata_Plate"])
    assert len(train) + len(test) == len(_plates_table())
    assert list(train.index) == list(range(len(train)))  # fresh index


def test_split_with_an_explicit_list() -> None:
    train, test = split_by_plate(_plates_table(), ["P1", "Q1"])
    assert sorted(test["Metadata_Plate"].unique()) == ["P1", "Q1"]
    assert sorted(train["Metadata_Plate"].unique()) == ["P2", "P3", "Q2"]


def test_split_unknown_plate_is_named() -> None:
    with pytest.raises(ValueError, match="'P9'"):
        split_by_plate(_plates_table(), ["P1", "P9"])


def test_split_refuses_an_empty_side() -> None:
    table = _plates_table()
    with pytest.raises(ValueError, match="no training or no held-out plate"):
        split_by_plate(table, sorted(table["Metadata_Plate"].unique()))
    one_plate = table[table["Metadata_Plate"] == "P1"]
    with pytest.raises(ValueError, match="no training or no held-out plate"):
        split_by_plate(one_plate)  # its only plate is its last plate


def test_split_unknown_strategy_is_named() -> None:
    with pytest.raises(ValueError, match="'first_plate'"):
        split_by_plate(_plates_table(), "first_plate")


# ----------------------------------------------------------------------------- truth


def test_require_truth_names_the_column() -> None:
    table = _plates_table()
    with pytest.raises(ValueError, match=TRUTH_COLUMN):
        require_truth(table)
    table[TRUTH_COLUMN] = "truth.tif"
    require_truth(table)
    table.loc[2, TRUTH_COLUMN] = ""
    with pytest.raises(ValueError, match=TRUTH_COLUMN):
        require_truth(table)


@pytest.mark.parametrize("missing", [np.nan, None], ids=["nan", "none"])
def test_require_truth_refuses_missing_values(missing: object) -> None:
    # regression: NaN/None (e.g. pd.concat of a screen with and one without masks) used to pass
    table = _plates_table()
    table[TRUTH_COLUMN] = "truth.tif"
    table[TRUTH_COLUMN] = table[TRUTH_COLUMN].astype(object)
    table.loc[2, TRUTH_COLUMN] = missing
    with pytest.raises(ValueError, match=TRUTH_COLUMN):
        require_truth(table)


# ----------------------------------------------------------------------------- screen


@pytest.fixture(scope="module")
def screen(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """Two simulated sites written as TIFFs, with an image table (paths relative to root)."""
    root = tmp_path_factory.mktemp("screen")
    rows = []
    for seed, (plate, well, site) in enumerate([("P1", "A01", 1), ("P2", "B03", 2)], start=21):
        image, truth = render_site(seed, size=128, n_cells=8)
        folder = root / "images" / plate
        folder.mkdir(parents=True)
        tifffile.imwrite(folder / f"{well}_s{site}_DNA.tif", image[0])
        tifffile.imwrite(folder / f"{well}_s{site}_truth.tif", truth)
        rows.append(
            {
                "Metadata_Source": "src1",
                "Metadata_Plate": plate,
                "Metadata_Well": well,
                "Metadata_Site": site,
                "Metadata_Treatment": "DMSO",
                "Path_DNA": f"images/{plate}/{well}_s{site}_DNA.tif",
                TRUTH_COLUMN: f"images/{plate}/{well}_s{site}_truth.tif",
            }
        )
    return root, pd.DataFrame(rows)


@pytest.fixture(scope="module")
def predict():
    model, _ = load_unet()
    return partial(predict_probabilities, model)


def test_labels_relpath() -> None:
    assert labels_relpath("P1", "A01", np.int64(3)) == "P1/A01_s3_nuclei.tif"


def test_segment_screen_writes_labels_and_nuclei(
    screen: tuple[Path, pd.DataFrame], predict, tmp_path: Path
) -> None:
    root, table = screen
    labels_dir = tmp_path / "labels"
    nuclei = segment_screen(table, root, partial(segment_nuclei, predict, views=2), labels_dir)
    assert list(nuclei.columns[:4]) == [
        "Metadata_Source",
        "Metadata_Plate",
        "Metadata_Well",
        "Metadata_Site",
    ]
    assert "ObjectNumber" in nuclei.columns and "Nuclei_Location_Center_X" in nuclei.columns
    for _, site in table.iterrows():
        relative = (
            f"{site['Metadata_Plate']}/{site['Metadata_Well']}_s{site['Metadata_Site']}_nuclei.tif"
        )
        labels = tifffile.imread(labels_dir / relative)
        assert labels.dtype == np.uint16
        truth = tifffile.imread(root / site[TRUTH_COLUMN])
        assert dsb_image_score(truth, labels).score > 0.8  # measured 0.95-1.0
        rows = nuclei[
            (nuclei["Metadata_Plate"] == site["Metadata_Plate"])
            & (nuclei["Metadata_Well"] == site["Metadata_Well"])
        ]
        assert len(rows) == int(labels.max()) > 0
        assert (rows["Metadata_Site"] == site["Metadata_Site"]).all()
        assert (rows["Metadata_Source"] == "src1").all()
        assert (rows["Path_NucleiLabels"] == relative).all()
        assert rows["ObjectNumber"].tolist() == list(range(1, len(rows) + 1))
        # centres sit on their own object
        ys = rows["Nuclei_Location_Center_Y"].round().astype(int)
        xs = rows["Nuclei_Location_Center_X"].round().astype(int)
        on_object = labels[ys, xs] == rows["ObjectNumber"].to_numpy()
        assert on_object.mean() > 0.9
    assert nuclei["Nuclei_TTA_Agreement"].between(0, 1).all()


def test_segment_screen_of_no_sites(tmp_path: Path, predict) -> None:
    empty = pd.DataFrame(
        columns=["Metadata_Source", "Metadata_Plate", "Metadata_Well", "Metadata_Site", "Path_DNA"]
    )
    nuclei = segment_screen(empty, tmp_path, predict, tmp_path / "labels")
    assert len(nuclei) == 0
    assert list(nuclei.columns) == [
        "Metadata_Source",
        "Metadata_Plate",
        "Metadata_Well",
        "Metadata_Site",
        "ObjectNumber",
    ]


def test_evaluate_views_and_metrics(screen: tuple[Path, pd.DataFrame], predict) -> None:
    root, table = screen
    samples = list(iter_dna_and_truth(table, root))
    assert [s[1].dtype for s in samples] == [np.int64, np.int64]

    def segment(image: np.ndarray, views: int) -> np.ndarray:
        return segment_nuclei(predict, image, views=views).labels

    scores, predictions = evaluate_views(segment, samples, views=(1, 2))
    assert sorted(scores) == [1, 2]
    assert all(len(predictions[n]) == 2 for n in (1, 2))
    for n in (1, 2):
        assert scores[n].n_images == 2
        assert scores[n].score > 0.8
        assert scores[n].score == pytest.approx(
            np.mean(
                [
                    dsb_image_score(t, p).score
                    for (_, t), p in zip(samples, predictions[n], strict=True)
                ]
            )
        )

    flat = flat_metrics(scores, "unet")
    assert flat["unet.views1.dsb_score"] == scores[1].score
    assert flat["unet.views2.dsb_ap_0.50"] == scores[2].per_threshold[0.5]
    assert all(isinstance(v, float) for v in flat.values())

    per_image = scores_table(scores, table, "unet")
    assert len(per_image) == 4
    assert set(per_image["views"]) == {1, 2}
    assert per_image["Metadata_Well"].tolist() == ["A01", "B03", "A01", "B03"]


def test_overlay_figure(screen: tuple[Path, pd.DataFrame]) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    root, table = screen
    image = tifffile.imread(root / table.loc[0, "Path_DNA"])
    truth = tifffile.imread(root / table.loc[0, TRUTH_COLUMN])
    fig = overlay_figure(
        image,
        truth,
        {"views 1": truth, "views 8": truth},
        {"views 1": 0.9, "views 8": 0.95},
        title="site",
    )
    try:
        assert isinstance(fig, Figure)
        assert len(fig.axes) == 4  # image, truth, two predictions
        titles = [ax.get_title() for ax in fig.axes]
        assert titles[0] == "DNA"
        assert "DSB 0.950" in titles[3]
        assert f"{int(truth.max())} nuclei" in titles[1]
    finally:
        plt.close(fig)
