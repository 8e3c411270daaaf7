"""Representation comparison: held-out part, training sets, featurisation, table and plot."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from morphoflow.backbone import scale_crops
from morphoflow.learning.comparison import (
    CORRECTIONS,
    TABLE_COLUMNS,
    AssemblySettings,
    Block6aExtractor,
    HoldOut,
    Representation,
    WSLVariant,
    compare_representations,
    extractor_kind,
    featurize_index,
    plot_comparison,
    training_index,
)
from morphoflow.learning.model import Block6aFeatures, build_efficientnet_b0
from morphoflow.profiling.workflow import EvaluationSettings
from tests.learning import write_crop_set


def test_holdout_masks_sources_and_plates_and_checks_names() -> None:
    frame = pd.DataFrame(
        {"Metadata_Source": ["a", "a", "b", "c"], "Metadata_Plate": ["a1", "a2", "b1", "c1"]}
    )
    assert HoldOut(sources=("c",), plates=("a2",)).mask(frame).tolist() == [
        False,
        True,
        False,
        True,
    ]
    with pytest.raises(ValueError, match="at least one"):
        HoldOut()
    with pytest.raises(ValueError, match=r"not in the screen: \['zz'\]"):
        HoldOut(sources=("zz",)).check(frame, "wells")
    with pytest.raises(ValueError, match="every row is held out"):
        HoldOut(sources=("a", "b", "c")).check(frame, "wells")


def test_variant_validates_its_fields() -> None:
    assert WSLVariant("v", ["s1"]).sources == ("s1",)
    with pytest.raises(ValueError, match="split"):
        WSLVariant("v", ("s1",), "random")
    with pytest.raises(ValueError, match="sources is empty"):
        WSLVariant("v", ())
    with pytest.raises(ValueError, match="plain name"):
        WSLVariant("a/b", ("s1",))


def _wells(seed: int = 0, sources: tuple[str, ...] = ("s1", "s2", "s3")) -> pd.DataFrame:
    """Well profiles: per plate 4 DMSO + 2 untreated + 8 treatments of 2 MoAs + 1 inactive.

    ``t1``...``t4`` (MoA ``m1``) and ``t5``...``t8`` (``m2``) shift feature 0 / 1 strongly;
    plates add an offset to every feature.
    """
    rng = np.random.default_rng(seed)
    wells = [f"{r}{c:02d}" for r in "ABCD" for c in range(1, 6)]
    layout = (
        [("DMSO", "", "negcon")] * 4
        + [("untreated", "", "negcon")] * 2
        + [(f"t{i}", "m1" if i <= 4 else "m2", "") for i in range(1, 9)]
        + [("t9", "inactive", "")]
    )
    rows = []
    for source in sources:
        for p in (1, 2):
            offset = rng.normal(0, 2, 6)
            for well, (treatment, moa, control) in zip(wells, layout, strict=False):
                x = offset + rng.normal(0, 1, 6)
                if moa == "m1":
                    x[0] += 6
                elif moa == "m2":
                    x[1] += 6
                rows.append(
                    {
                        "Metadata_Source": source,
                        "Metadata_Plate": f"{source}_P{p}",
                        "Metadata_Well": well,
                        "Metadata_Treatment": treatment,
                        "Metadata_MoA": moa,
                        "Metadata_ControlType": control,
                        "Metadata_CellCount": 10,
                        **{f"Cells_f{k}": float(v) for k, v in enumerate(x)},
                    }
                )
    return pd.DataFrame(rows)


def _cells(wells: pd.DataFrame) -> pd.DataFrame:
    """A crop index with 3 cells per well (crops are never read by training_index)."""
    meta = [c for c in wells.columns if c.startswith("Metadata_") and c != "Metadata_CellCount"]
    frame = wells[meta].loc[wells.index.repeat(3)].reset_index(drop=True)
    frame["Metadata_Site"] = 1
    frame["Metadata_ObjectNumber"] = np.tile([1, 2, 3], len(wells))
    frame["Path_Crops"] = frame["Metadata_Plate"] + "/" + frame["Metadata_Well"] + "_s1.npz"
    frame["Metadata_CropIndex"] = frame["Metadata_ObjectNumber"] - 1
    return frame


def test_training_index_never_uses_the_held_out_part() -> None:
    wells = _wells()
    cells = _cells(wells)
    settings = AssemblySettings(strength={"n_null": 200}, max_control_cells_per_plate=None)
    holdout = HoldOut(sources=("s3",), plates=("s2_P2",))
    index, strength = training_index(cells, wells, ["s1", "s2"], holdout, settings)
    assert set(index["Metadata_Plate"]) <= {"s1_P1", "s1_P2", "s2_P1"}
    assert set(strength["Metadata_Source"]) == {"s1", "s2"}
    # strong treatments and both control kinds; the inactive one is not strong
    assert {"DMSO", "untreated", "t1", "t5"} <= set(index["Metadata_Label"])
    assert "t9" not in set(index["Metadata_Label"])
    # strength is computed without the held-out plate: s2 has one plate left
    assert (strength.loc[strength["Metadata_Source"] == "s2", "n_replicates"] == 1).all()
    with pytest.raises(ValueError, match="held out"):
        training_index(cells, wells, ["s3"], holdout, settings)
    with pytest.raises(ValueError, match="not in the crop index"):
        training_index(cells, wells, ["s9"], holdout, settings)


def test_featurize_index_gives_site_medians_of_the_indexed_crops(tmp_path: Path) -> None:
    index = write_crop_set(tmp_path, cells_per_well=5, size=16)
    index = index[index["Metadata_CropIndex"] != 4]  # a subset of each site's cells

    def channel_means(crops: np.ndarray, masks: np.ndarray) -> pd.DataFrame:
        assert crops.dtype == np.float32 and masks.shape == (len(crops), 16, 16)
        return pd.DataFrame(crops.mean(axis=(2, 3)), columns=[f"f{c}" for c in range(5)])

    sites = featurize_index(index, tmp_path, channel_means)
    assert len(sites) == 6 and (sites["Metadata_CellCount"] == 4).all()
    assert {"Metadata_Treatment", "Metadata_MoA", "Metadata_ControlType"} <= set(sites.columns)
    # the blob of class k is in channel k: its median is the largest there
    for k, treatment in enumerate(("cpd_a", "cpd_b", "cpd_c")):
        row = sites[sites["Metadata_Treatment"] == treatment].iloc[0]
        assert int(np.argmax(row[[f"f{c}" for c in range(5)]].to_numpy(float))) == k
    with pytest.raises(ValueError, match="crops.store=true"):
        featurize_index(index.assign(Path_Crops=""), tmp_path, channel_means)


def test_block6a_extractor_matches_the_featurizer() -> None:
    torch.manual_seed(0)
    model = build_efficientnet_b0(3).eval()
    crops = np.random.default_rng(0).normal(500, 50, (3, 5, 32, 32)).astype(np.float32)
    features = Block6aExtractor(model, batch_size=2)(crops, None)
    assert features.shape == (3, 672) and features.columns[0] == "CNN_0"
    with torch.no_grad():
        expected = Block6aFeatures(model)(torch.from_numpy(scale_crops(crops))).numpy()
    np.testing.assert_allclose(features.to_numpy(), expected, rtol=1e-5, atol=1e-6)
    assert extractor_kind(features.assign(Metadata_Well="A01")) == "cnn"
    assert extractor_kind(_wells()) == "classical"


def test_compare_representations_scores_each_correction_and_reports_skips() -> None:
    wells = _wells(sources=("s3",))
    settings = EvaluationSettings(null_size=50, shuffles=3)
    noisy = wells.copy()
    features = [c for c in wells.columns if c.startswith("Cells_")]
    noisy[features] = np.random.default_rng(1).normal(0, 1, (len(wells), len(features)))
    table = compare_representations(
        [
            Representation("classical", "classical", wells, info={"epochs": 0}),
            Representation("imagenet", "imagenet", reason="no weights"),
            Representation("noise", "wsl", noisy, info={"epochs": 1, "split": "leave_cells_out"}),
        ],
        settings,
    )
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert table[["representation", "correction"]].values.tolist() == [
        [name, c] for name in ("classical", "imagenet", "noise") for c in CORRECTIONS
    ]
    ok = table[table["status"] == "ok"]
    scores = ["map", "folds_of_enrichment", "shuffled_map", "map_sem", "lambda"]
    assert np.isfinite(ok[scores].to_numpy(float)).all()
    skipped = table[table["representation"] == "imagenet"]
    assert (skipped["status"] == "skipped").all() and (skipped["reason"] == "no weights").all()
    assert skipped["map"].isna().all()
    # the MoA signal is there in the real features, not in the noise
    classical = ok[ok["representation"] == "classical"].set_index("correction")["map"]
    noise = ok[ok["representation"] == "noise"].set_index("correction")["map"]
    assert classical["sphered"] > noise["sphered"]
    assert (ok["n_cells"] == 10 * len(wells)).all()
    assert isinstance(plot_comparison(table), Figure)

    with pytest.raises(ValueError, match="unique"):
        compare_representations(
            [Representation("a", "wsl", wells), Representation("a", "wsl", wells)], settings
        )
    with pytest.raises(ValueError, match="either"):
        Representation("a", "wsl")
    assert math.isnan(float(table.loc[table["representation"] == "imagenet", "lambda"].iloc[0]))
