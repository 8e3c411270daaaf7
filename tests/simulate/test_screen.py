"""Tests of morphoflow.simulate (design, render, write): the simulated Cell Painting screen."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage as ndi

from morphoflow.screen.constants import CHANNELS, WELL_PATTERN
from morphoflow.simulate import (
    FORMAT,
    INACTIVE_MOA,
    LATENT_DIMS,
    PRESETS,
    CellLine,
    ScreenPreset,
    render_site,
    simulate_screen,
)

TINY = ScreenPreset(
    n_sources=2,
    plates_per_source=2,
    n_moas=2,
    treatments_per_moa=2,
    n_null_treatments=1,
    n_source_specific=1,
    n_dmso_wells=2,
    n_untreated_wells=1,
    sites_per_well=1,
    site_size=96,
    cells_per_site=(4, 8),
    nucleus_radius=6.0,
)

LOAD_DATA_COLUMNS = [
    "Metadata_Source",
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_Site",
    *[f"{kind}_Orig{c}" for c in CHANNELS for kind in ("FileName", "PathName")],
    "FileName_NucleiTruth",
    "PathName_NucleiTruth",
]


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False)


def _tables(root: Path) -> dict[str, pd.DataFrame]:
    return {
        name: _read_csv(root / f"{name}.csv") for name in ("load_data", "platemap", "moa", "truth")
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tiny") / "screen"
    return out, simulate_screen(out, TINY, seed=3)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo preset, generated once (~15 s)."""
    out = tmp_path_factory.mktemp("demo") / "screen"
    simulate_screen(out, "demo", seed=0)
    return out


@pytest.fixture(scope="module")
def demo_wells(demo: Path) -> pd.DataFrame:
    """Per-well measurements of the demo screen, using the ground-truth nucleus masks."""
    load = _read_csv(demo / "load_data.csv")
    rows = []
    for r in load.itertuples():
        folder = demo / r.PathName_OrigDNA
        image = np.stack(
            [tifffile.imread(folder / getattr(r, f"FileName_Orig{c}")) for c in CHANNELS]
        )
        labels = tifffile.imread(folder / r.FileName_NucleiTruth)
        index = np.arange(1, int(labels.max()) + 1)
        area = ndi.sum_labels(np.ones(labels.shape), labels, index)
        dna = ndi.mean(image[0].astype(float), labels, index)
        row = {
            "Metadata_Plate": r.Metadata_Plate,
            "Metadata_Well": r.Metadata_Well,
            "count": len(index),
            "dna_contrast": float(
                np.median(image[0][labels > 0]) / np.median(image[0][labels == 0])
            ),
            "log_count": np.log(len(index)),
            "log_area": float(np.mean(np.log(area))),
            "log_dna": float(np.mean(np.log(dna))),
        }
        row.update({f"log_{c}": float(np.log(image[i].mean())) for i, c in enumerate(CHANNELS)})
        rows.append(row)
    keys = ["Metadata_Plate", "Metadata_Well"]
    sites = pd.DataFrame(rows)
    wells = sites.drop(columns="count").groupby(keys, as_index=False).mean()
    counts = sites.groupby(keys, as_index=False).agg(
        min_count=("count", "min"), max_count=("count", "max"), min_contrast=("dna_contrast", "min")
    )
    wells = wells.merge(counts, on=keys)
    truth = _read_csv(demo / "truth.csv")[["Metadata_Treatment", "kind"]]
    return wells.merge(_read_csv(demo / "platemap.csv")).merge(truth, on="Metadata_Treatment")


# ------------------------------------------------------------------------------------------
# render_site
# ------------------------------------------------------------------------------------------


def test_render_site_shapes_dtypes_and_labels() -> None:
    image, labels = render_site(0, size=128, n_cells=8)
    assert image.shape == (len(CHANNELS), 128, 128) and image.dtype == np.uint16
    assert labels.shape == (128, 128) and labels.dtype == np.uint32
    assert image.max() <= 4095
    assert np.array_equal(np.unique(labels), np.arange(0, 9))  # 0 + labels 1..n, no gaps


def test_render_site_is_deterministic() -> None:
    a = render_site(7, size=96, n_cells=5)
    b = render_site(7, size=96, n_cells=5)
    c = render_site(8, size=96, n_cells=5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_truth_labels_align_with_dna() -> None:
    for seed in range(3):
        image, labels = render_site(seed, size=192, n_cells=15)
        dna = image[0].astype(float)
        inside, outside = dna[labels > 0], dna[labels == 0]
        assert np.median(inside) > 5 * np.median(outside)
        threshold = (np.median(inside) + np.median(outside)) / 2
        index = np.arange(1, int(labels.max()) + 1)
        bright = ndi.mean((dna > threshold).astype(float), labels, index)
        assert np.min(bright) > 0.6, "every nucleus is mostly bright in DNA"
        assert np.mean(bright) > 0.9


def test_render_site_shift_changes_the_phenotype() -> None:
    """A latent nucleus-area shift of +2 makes the nuclei ~exp(2 * 0.18) ~ 1.4x bigger."""
    shift = np.zeros(len(LATENT_DIMS))
    shift[LATENT_DIMS.index("nucleus_area")] = 2.0
    base = [render_site(s, size=192, n_cells=15)[1] for s in range(3)]
    bigger = [render_site(s, size=192, n_cells=15, shift=shift)[1] for s in range(3)]

    def mean_area(masks: list[np.ndarray]) -> float:
        return float(np.mean([(m > 0).sum() / m.max() for m in masks]))

    assert 1.2 < mean_area(bigger) / mean_area(base) < 1.7


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"seed": 0, "size": 8}, "size"),
        ({"seed": 0, "n_cells": -2}, "n_cells"),
        ({"seed": 0, "n_cells": 500}, "n_cells"),
        ({"seed": 0, "shift": [1.0, 2.0]}, "shift"),
    ],
)
def test_render_site_rejects_bad_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        render_site(**kwargs)


def test_render_site_without_cells_is_background() -> None:
    image, labels = render_site(0, size=64, n_cells=0, cell_line=CellLine(nucleus_radius=5.0))
    assert labels.max() == 0
    assert image[0].std() < 20


# ------------------------------------------------------------------------------------------
# simulate_screen: files and tables
# ------------------------------------------------------------------------------------------


def test_tables_have_the_contract_columns(tiny: tuple[Path, dict]) -> None:
    out, _ = tiny
    tables = _tables(out)
    assert list(tables["load_data"].columns) == LOAD_DATA_COLUMNS
    assert list(tables["platemap"].columns) == [
        "Metadata_Plate",
        "Metadata_Well",
        "Metadata_Treatment",
        "Metadata_ControlType",
    ]
    assert list(tables["moa"].columns) == ["Metadata_Treatment", "Metadata_MoA"]
    assert list(tables["truth"].columns) == [
        "Metadata_Treatment",
        "Metadata_MoA",
        "strength",
        "kind",
        *[f"shift_{d}" for d in LATENT_DIMS],
    ]
    platemap = tables["platemap"]
    assert platemap["Metadata_Well"].str.fullmatch(WELL_PATTERN).all()
    assert not platemap.duplicated(["Metadata_Plate", "Metadata_Well"]).any()
    assert set(platemap["Metadata_ControlType"]) == {"negcon", ""}
    controls = platemap["Metadata_Treatment"].isin(["DMSO", "untreated"])
    assert (platemap.loc[controls, "Metadata_ControlType"] == "negcon").all()
    assert (platemap.loc[~controls, "Metadata_ControlType"] == "").all()


def test_moa_and_truth_conventions(tiny: tuple[Path, dict]) -> None:
    out, _ = tiny
    tables = _tables(out)
    moa = tables["moa"].set_index("Metadata_Treatment")["Metadata_MoA"]
    truth = tables["truth"].set_index("Metadata_Treatment")
    assert set(moa.index) == set(tables["platemap"]["Metadata_Treatment"]) == set(truth.index)
    assert moa["DMSO"] == "" and moa["untreated"] == ""
    assert set(truth["kind"]) <= {"strong", "moderate", "weak", "null", "control"}
    assert (truth.loc[truth["kind"] == "null", "Metadata_MoA"] == INACTIVE_MOA).all()
    assert (truth.loc[truth["kind"] == "null", "strength"] == 0).all()
    active = truth[truth["kind"].isin(["strong", "moderate", "weak"])]
    assert active["Metadata_MoA"].str.fullmatch(r"MOA\d\d").all()
    assert (truth["Metadata_MoA"] == moa[truth.index]).all()
    shifts = truth[[f"shift_{d}" for d in LATENT_DIMS]].to_numpy()
    assert np.all(shifts[truth["kind"] == "null"] == 0)
    assert np.all(np.linalg.norm(shifts[truth["kind"] == "strong"], axis=1) > 1.5)


def test_files_exist_and_are_uint16(tiny: tuple[Path, dict]) -> None:
    out, summary = tiny
    load = _read_csv(out / "load_data.csv")
    assert len(load) == summary["n_sites"] == 2 * 2 * TINY.wells_per_plate * TINY.sites_per_well
    assert load["Metadata_Site"].min() == 1
    for r in load.itertuples():
        assert r.PathName_OrigDNA == f"images/{r.Metadata_Source}/{r.Metadata_Plate}"
        assert (
            r.FileName_OrigDNA == f"{r.Metadata_Plate}_{r.Metadata_Well}_s{r.Metadata_Site}_DNA.tif"
        )
        for c in CHANNELS:
            assert (
                out / getattr(r, f"PathName_Orig{c}") / getattr(r, f"FileName_Orig{c}")
            ).is_file()
    first = load.iloc[0]
    with tifffile.TiffFile(out / first["PathName_OrigER"] / first["FileName_OrigER"]) as tif:
        page = tif.pages[0]
        assert page.dtype == np.uint16 and page.shape == (TINY.site_size, TINY.site_size)
        assert page.compression.name in {"ADOBE_DEFLATE", "DEFLATE"}
    truth = tifffile.imread(out / first["PathName_NucleiTruth"] / first["FileName_NucleiTruth"])
    assert truth.dtype == np.uint16
    lo, hi = TINY.cells_per_site
    assert lo <= truth.max() <= hi


def test_screen_json_and_summary(tiny: tuple[Path, dict]) -> None:
    out, summary = tiny
    meta = json.loads((out / "screen.json").read_text())
    assert meta["format"] == FORMAT and meta["seed"] == 3 and meta["preset"] == "custom"
    assert meta["counts"]["n_sites"] == summary["n_sites"]
    assert meta["parameters"]["site_size"] == TINY.site_size
    assert summary["out"] == str(out.absolute())
    assert summary["n_plates"] == 4 and summary["n_sources"] == 2
    assert summary["n_treatments"] == 2 * 2 + 1 + 2  # per MoA, null, source-specific


def test_controls_on_every_plate_and_treatments_replicated(tiny: tuple[Path, dict]) -> None:
    out, _ = tiny
    platemap = _read_csv(out / "platemap.csv")
    per_plate = platemap.groupby("Metadata_Plate")["Metadata_Treatment"]
    assert (per_plate.apply(lambda t: (t == "DMSO").sum()) == TINY.n_dmso_wells).all()
    assert (per_plate.apply(lambda t: (t == "untreated").sum()) == TINY.n_untreated_wells).all()
    plates = platemap.groupby("Metadata_Treatment")["Metadata_Plate"].nunique()
    assert (plates >= 2).all()


def test_layout_shuffled_per_source_and_fixed_within_a_source(tiny: tuple[Path, dict]) -> None:
    out, _ = tiny
    platemap = _read_csv(out / "platemap.csv")
    layouts = {
        plate: dict(zip(g["Metadata_Well"], g["Metadata_Treatment"], strict=True))
        for plate, g in platemap.groupby("Metadata_Plate")
    }
    assert layouts["S1_P01"] == layouts["S1_P02"]
    assert layouts["S2_P01"] == layouts["S2_P02"]
    assert layouts["S1_P01"] != layouts["S2_P01"]


def test_same_seed_same_screen_other_seed_differs(tmp_path: Path, tiny: tuple[Path, dict]) -> None:
    reference, _ = tiny
    again = tmp_path / "again"
    simulate_screen(again, TINY, seed=3)
    other = tmp_path / "other"
    simulate_screen(other, TINY, seed=4)
    for name in ("load_data.csv", "platemap.csv", "moa.csv", "truth.csv", "screen.json"):
        assert (again / name).read_bytes() == (reference / name).read_bytes(), name
    files = sorted(p.relative_to(reference) for p in (reference / "images").rglob("*.tif"))
    assert files == sorted(p.relative_to(again) for p in (again / "images").rglob("*.tif"))
    for rel in files[:: max(1, len(files) // 12)]:
        assert np.array_equal(tifffile.imread(reference / rel), tifffile.imread(again / rel)), rel
    assert (other / "truth.csv").read_bytes() != (reference / "truth.csv").read_bytes()
    assert (other / "platemap.csv").read_bytes() != (reference / "platemap.csv").read_bytes()
    first_other = sorted((other / "images").rglob("*_DNA.tif"))[0]
    first_reference = sorted((reference / "images").rglob("*_DNA.tif"))[0]
    assert not np.array_equal(tifffile.imread(first_other), tifffile.imread(first_reference))


# ------------------------------------------------------------------------------------------
# simulate_screen: atomic write and bad arguments
# ------------------------------------------------------------------------------------------

SMALLEST = ScreenPreset(
    n_sources=1,
    plates_per_source=1,
    n_moas=1,
    treatments_per_moa=1,
    n_null_treatments=0,
    n_source_specific=0,
    n_dmso_wells=1,
    n_untreated_wells=1,
    sites_per_well=1,
    site_size=64,
    cells_per_site=(2, 3),
    nucleus_radius=5.0,
)


def test_write_is_atomic_and_replaces_a_previous_screen(tmp_path: Path) -> None:
    out = tmp_path / "screen"
    simulate_screen(out, SMALLEST, seed=0)
    first = (out / "truth.csv").read_bytes()
    simulate_screen(out, SMALLEST, seed=1)  # a previous screen may be replaced
    assert (out / "truth.csv").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["screen"], "no temporary folder left"
    empty = tmp_path / "empty"
    empty.mkdir()
    simulate_screen(empty, SMALLEST, seed=0)  # an empty folder is fine
    assert (empty / "screen.json").is_file()


def test_refuses_a_foreign_non_empty_folder(tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="out"):
        simulate_screen(out, SMALLEST, seed=0)
    assert (out / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="out"):
        simulate_screen(a_file, SMALLEST, seed=0)


def test_a_crash_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import morphoflow.simulate.write as write

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(write, "_move_into_place", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        simulate_screen(tmp_path / "screen", SMALLEST, seed=0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"preset": "huge"}, "preset"),
        ({"preset": 3}, "preset"),
        ({"seed": -1}, "seed"),
        ({"seed": "0"}, "seed"),
        ({"seed": True}, "seed"),
        ({"progress": "yes"}, "progress"),
    ],
)
def test_simulate_screen_rejects_bad_arguments(tmp_path: Path, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        simulate_screen(tmp_path / "screen", **{"preset": SMALLEST, **kwargs})
    assert not (tmp_path / "screen").exists()


def test_cli_names_every_preset_when_one_is_unknown(tmp_path: Path) -> None:
    """``simulate-screen --preset`` accepts the screen presets and ``library``; an unknown name
    is refused before anything is written, with all of them listed (library was missing)."""
    from typer.testing import CliRunner

    from morphoflow.cli import app
    from morphoflow.simulate import SIMULATE_PRESETS

    assert SIMULATE_PRESETS == ("demo", "benchmark", "library")
    result = CliRunner().invoke(
        app, ["simulate-screen", "--out", str(tmp_path / "x"), "--preset", "huge"]
    )
    assert result.exit_code == 2
    assert "['demo', 'benchmark', 'library']" in result.output
    assert "'huge'" in result.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_sources", 0),
        ("sites_per_well", 1.5),
        ("n_null_treatments", -1),
        ("site_size", 16),
        ("cells_per_site", (10, 5)),
        ("cells_per_site", (10, 500)),
        ("nucleus_radius", 1.0),
        ("moa_dims", 99),
        ("n_moas", 200),
    ],
)
def test_preset_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        ScreenPreset(**{field: value})


def test_presets() -> None:
    assert set(PRESETS) == {"demo", "benchmark"}
    demo, bench = PRESETS["demo"], PRESETS["benchmark"]
    assert (
        demo.n_sources * demo.plates_per_source * demo.wells_per_plate * demo.sites_per_well < 300
    )
    assert bench.n_moas * bench.treatments_per_moa > demo.n_moas * demo.treatments_per_moa


# ------------------------------------------------------------------------------------------
# The demo screen carries the effects it promises
# ------------------------------------------------------------------------------------------


def test_demo_nuclei_counts_within_promised_range(demo_wells: pd.DataFrame) -> None:
    lo, hi = PRESETS["demo"].cells_per_site
    assert demo_wells["min_count"].min() >= lo and demo_wells["max_count"].max() <= hi
    assert demo_wells["max_count"].max() - demo_wells["min_count"].min() >= (hi - lo) // 2


def test_demo_truth_masks_align_with_dna_on_every_plate(demo_wells: pd.DataFrame) -> None:
    assert demo_wells["min_contrast"].min() > 3


def test_demo_plate_effect_clusters_control_wells_by_plate(demo_wells: pd.DataFrame) -> None:
    """Raw per-channel intensities of control wells identify their plate (batch effect)."""
    controls = demo_wells[demo_wells["Metadata_ControlType"] == "negcon"]
    x = controls[[f"log_{c}" for c in CHANNELS]].to_numpy()
    plates = controls["Metadata_Plate"].to_numpy()
    correct = 0
    for i in range(len(x)):
        rest = np.arange(len(x)) != i
        centroids = {p: x[rest & (plates == p)].mean(axis=0) for p in np.unique(plates)}
        guess = min(centroids, key=lambda p: np.linalg.norm(x[i] - centroids[p]))
        correct += guess == plates[i]
    accuracy = correct / len(x)
    assert accuracy > 0.8, accuracy  # chance: 1 / 6
    # ... and per channel, plates differ far more than wells within a plate.
    frame = pd.DataFrame(x, columns=CHANNELS).assign(plate=plates)
    ratio = frame.groupby("plate").mean().var() / frame.groupby("plate").var().mean()
    assert (ratio > 2).all(), ratio.to_dict()


def test_demo_strong_treatments_differ_from_controls_more_than_null(
    demo_wells: pd.DataFrame,
) -> None:
    features = ["log_count", "log_area", "log_dna", *[f"log_{c}" for c in CHANNELS]]
    distances = []
    for _, plate in demo_wells.groupby("Metadata_Plate"):
        controls = plate[plate["Metadata_ControlType"] == "negcon"][features]
        z = (plate[features] - controls.mean()) / controls.std()
        distances.append(plate.assign(distance=np.sqrt((z**2).sum(axis=1))))
    by_kind = pd.concat(distances).groupby("kind")["distance"].median()
    assert by_kind["strong"] > 1.3 * by_kind["null"], by_kind.to_dict()
    assert by_kind["strong"] > by_kind["weak"]


def test_demo_dmso_and_untreated_are_near_baseline(demo_wells: pd.DataFrame) -> None:
    controls = demo_wells[demo_wells["kind"] == "control"]
    means = controls.groupby("Metadata_Treatment")[["log_area", "log_count"]].mean()
    assert set(means.index) == {"DMSO", "untreated"}
    assert (means.loc["DMSO"] - means.loc["untreated"]).abs().max() < 0.1
