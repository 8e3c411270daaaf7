"""Tests of morphoflow.segmentation.settings: one settings class, its defaults, one factory."""

from __future__ import annotations

import inspect
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
from typer.testing import CliRunner

from morphoflow.cli import app, segment
from morphoflow.segmentation.onnx_model import load_predictor
from morphoflow.segmentation.segmenter import segment_nuclei
from morphoflow.segmentation.settings import (
    CLI_DEFAULTS,
    PIPELINE_DEFAULTS,
    SegmenterSettings,
    make_segmenter,
)
from morphoflow.segmentation.tta import VIEW_ORDER
from tests.conftest import PROJECT_ROOT


def _yaml(name: str) -> dict:
    return yaml.safe_load((PROJECT_ROOT / "conf" / "base" / name).read_text())


# ----------------------------------------------------------------------------- defaults


def test_pipeline_yaml_repeats_pipeline_defaults() -> None:
    nuclei = dict(_yaml("parameters_profiling.yml")["nuclei"])
    assert SegmenterSettings.from_params(nuclei, defaults=CLI_DEFAULTS) == PIPELINE_DEFAULTS
    # every field is written in the YAML, none left to a code default
    assert set(nuclei) == set(PIPELINE_DEFAULTS.to_params())


def test_segmentation_yaml_postprocess_matches_pipeline_defaults() -> None:
    postprocess = _yaml("parameters_segmentation.yml")["segmentation"]["postprocess"]
    settings = SegmenterSettings.from_params(postprocess, defaults=PIPELINE_DEFAULTS)
    assert (settings.threshold, settings.min_diameter, settings.max_diameter) == (
        PIPELINE_DEFAULTS.threshold,
        PIPELINE_DEFAULTS.min_diameter,
        PIPELINE_DEFAULTS.max_diameter,
    )
    # the evaluation scores against truth that keeps border nuclei: it must keep them too
    assert settings.discard_border_objects is False


def test_promotion_scores_with_the_cli_views() -> None:
    # `morphoflow promote` / the evaluation pipeline score a candidate as users segment with it
    assert _yaml("parameters_evaluation.yml")["evaluation"]["views"] == len(CLI_DEFAULTS.views)


def test_cli_and_pipeline_defaults_differ_only_in_views_and_border_objects() -> None:
    assert CLI_DEFAULTS.views == VIEW_ORDER  # 8 views: one image at a time
    assert PIPELINE_DEFAULTS.views == ("identity",)  # no TTA over a whole screen
    assert CLI_DEFAULTS.discard_border_objects is False  # a user sees every nucleus
    assert PIPELINE_DEFAULTS.discard_border_objects is True  # truncated crops/features
    differ = {"views": None, "discard_border_objects": None}
    assert {**CLI_DEFAULTS.to_params(), **differ} == {**PIPELINE_DEFAULTS.to_params(), **differ}
    assert SegmenterSettings() == CLI_DEFAULTS
    # min_size 16 px became min_diameter 4.5 px: the same objects (area >= 16) are kept
    assert np.pi * 4.5**2 / 4 == pytest.approx(15.90, abs=0.01)
    assert (CLI_DEFAULTS.min_diameter, CLI_DEFAULTS.max_diameter) == (4.5, None)
    assert CLI_DEFAULTS.diameter is None


def test_cli_options_default_to_cli_defaults() -> None:
    options = inspect.signature(segment).parameters
    assert options["views"].default is None  # None: len(CLI_DEFAULTS.views), or 1 with --no-tta
    assert options["threshold"].default == CLI_DEFAULTS.threshold
    assert options["min_diameter"].default == CLI_DEFAULTS.min_diameter
    assert options["max_diameter"].default == CLI_DEFAULTS.max_diameter
    assert options["discard_border_objects"].default == CLI_DEFAULTS.discard_border_objects
    assert options["diameter"].default == CLI_DEFAULTS.diameter


# ----------------------------------------------------------------------------- from_params


def test_unknown_keys_are_all_named() -> None:
    with pytest.raises(ValueError, match=r"unknown keys \['treshold', 'view'\]"):
        SegmenterSettings.from_params({"view": 2, "treshold": 0.4, "min_diameter": 3})
    with pytest.raises(ValueError, match=r"unknown keys \['min_size'\]"):  # replaced, not aliased
        SegmenterSettings.from_params({"min_size": 16})


def test_missing_keys_come_from_the_given_defaults() -> None:
    assert SegmenterSettings.from_params({}).views == VIEW_ORDER
    assert SegmenterSettings.from_params({}, defaults=PIPELINE_DEFAULTS).views == ("identity",)
    settings = SegmenterSettings.from_params({"min_diameter": 4, "model": None})
    assert (settings.min_diameter, settings.model, settings.uses_default_model) == (
        4.0,
        "default",
        True,
    )


def test_round_trip_through_params() -> None:
    settings = SegmenterSettings(model="m.onnx", views=["rot90", "identity"], threshold=0.4)
    assert SegmenterSettings.from_params(settings.to_params()) == settings


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("threshold", 0.0, "threshold must be in"),
        ("threshold", 1.0, "threshold must be in"),
        ("threshold", "0.5", "threshold must be a number"),
        ("min_diameter", -1, "min_diameter must be a finite number of pixels >= 0"),
        ("min_diameter", float("nan"), "min_diameter must be a finite number"),
        ("min_diameter", None, "min_diameter must be a number of pixels >= 0"),
        ("max_diameter", "40", "max_diameter must be a number of pixels >= 0"),
        ("max_diameter", 4.0, r"max_diameter \(4.0\) must be >= min_diameter \(4.5\)"),
        ("diameter", 0, "diameter must be a finite number of pixels > 0"),
        ("diameter", float("inf"), "diameter must be a finite number of pixels > 0"),
        ("discard_border_objects", "false", "discard_border_objects must be true or false"),
        ("discard_border_objects", 1, "discard_border_objects must be true or false"),
        ("batch_size", 0, "batch_size must be an int >= 1"),
        ("batch_size", True, "batch_size must be an int >= 1"),
    ],
)
def test_bad_values_name_their_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegmenterSettings.from_params({field: value})


# ----------------------------------------------------------------------------- views rule


@pytest.mark.parametrize(
    ("views", "expected"),
    [
        (1, ("identity",)),
        (3, VIEW_ORDER[:3]),
        (np.int64(8), VIEW_ORDER),
        ("rot90", ("rot90",)),
        (["rot90", "identity"], ("rot90", "identity")),  # names kept, in the given order
    ],
)
def test_views_rule(views: object, expected: tuple[str, ...]) -> None:
    assert SegmenterSettings(views=views).views == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("views", "message"),
    [
        (0, r"views must be in 1\.\.8, got 0"),
        (9, r"views must be in 1\.\.8, got 9"),
        (True, "views must be an int in 1..8 or view names"),
        ([], "views is empty"),
        (["identity", "identity"], "views repeats a view"),
        (["rot45"], r"views has unknown views \['rot45'\]"),
    ],
)
def test_bad_views_are_refused_by_name(views: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegmenterSettings.from_params({"views": views})


# ----------------------------------------------------------------------------- factory


@pytest.fixture(scope="module")
def dna() -> np.ndarray:
    """A uint16 DNA image (96, 96): six bright disks (radius 6-9 px) on a noisy background."""
    rng = np.random.default_rng(31)
    yy, xx = np.mgrid[:96, :96]
    image = rng.normal(400.0, 20.0, (96, 96))
    for y, x, r in [(15, 18, 7), (20, 60, 8), (48, 35, 6), (50, 78, 9), (78, 20, 7), (80, 60, 8)]:
        image[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] += 3000.0
    return np.clip(image, 0, 65535).astype(np.uint16)


@pytest.fixture(scope="module")
def predict():
    return load_predictor(None)


def test_local_segmenter_is_segment_nuclei_with_the_settings(dna: np.ndarray, predict) -> None:
    settings = SegmenterSettings(
        views=["identity", "rot90"], threshold=0.6, min_diameter=2.5, max_diameter=15.0
    )
    made = make_segmenter(settings, predict)(dna)
    direct = segment_nuclei(
        predict, dna, views=("identity", "rot90"), threshold=0.6, min_diameter=2.5, max_diameter=15
    )
    assert made.views == ("identity", "rot90")  # named views honoured, not "the first 2"
    np.testing.assert_array_equal(made.labels, direct.labels)
    assert made.labels.max() > 0


def test_factory_refuses_what_it_cannot_use() -> None:
    with pytest.raises(ValueError, match="settings must be a SegmenterSettings"):
        make_segmenter({"views": 1}, partial(np.zeros))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend must be a predict function"):
        make_segmenter(CLI_DEFAULTS, 3)  # type: ignore[arg-type]


def test_cli_and_profiling_node_build_the_same_segmenter(tmp_path: Path, dna: np.ndarray) -> None:
    """Same settings -> same labels, from `morphoflow segment` and the pipeline node."""
    from morphoflow.pipelines.profiling.plates import make_plate_segmenter
    from morphoflow.segmentation.screen import segment_screen

    root = tmp_path / "screen"
    (root / "P1").mkdir(parents=True)
    tifffile.imwrite(root / "P1" / "A01_s1_DNA.tif", dna)
    table = pd.DataFrame(
        [
            {
                "Metadata_Source": "s1",
                "Metadata_Plate": "P1",
                "Metadata_Well": "A01",
                "Metadata_Site": 1,
                "Path_DNA": "P1/A01_s1_DNA.tif",
            }
        ]
    )
    params = {
        "model": "default",
        "views": 2,
        "threshold": 0.6,
        "min_diameter": 3.5,
        "max_diameter": 40,
        "discard_border_objects": False,
        "diameter": None,
        "batch_size": 4,
    }
    # the segmenter of the profiling pipeline's plate task, from the same parameters
    settings = SegmenterSettings.from_params(params, defaults=PIPELINE_DEFAULTS)
    segment = make_plate_segmenter(settings, {"backend": "local"})
    nuclei = segment_screen(table, root, segment, tmp_path / "labels")
    node_labels = tifffile.imread(tmp_path / "labels" / nuclei["Path_NucleiLabels"].iloc[0])

    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app,
        [
            "segment",
            str(root / "P1" / "A01_s1_DNA.tif"),
            "--out",
            str(out),
            "--views",
            "2",
            "--threshold",
            "0.6",
            "--min-diameter",
            "3.5",
            "--max-diameter",
            "40",
        ],
    )
    assert result.exit_code == 0, result.output
    cli_labels = tifffile.imread(out / "A01_s1_DNA_labels.tif")
    assert node_labels.max() > 0
    np.testing.assert_array_equal(cli_labels, node_labels)


def test_profiling_node_names_unknown_nuclei_keys(tmp_path: Path) -> None:
    from morphoflow.pipelines.profiling.nodes import plate_tasks

    params = {"views": 1, "treshold": 0.5}
    features = {"extractor": "classical"}
    with pytest.raises(ValueError, match=r"unknown keys \['treshold'\]"):
        plate_tasks(pd.DataFrame(), None, tmp_path, params, {}, {}, features, {})


def test_segment_cli_takes_the_tta_merge(tmp_path: Path, dna: np.ndarray) -> None:
    """`morphoflow segment --merge` gives the labels of the segmenter with that merge."""
    path = tmp_path / "dna.tif"
    tifffile.imwrite(path, dna)
    for merge in ("mean", "vote"):
        out = tmp_path / merge
        result = CliRunner().invoke(
            app, ["segment", str(path), "--out", str(out), "--views", "4", "--merge", merge]
        )
        assert result.exit_code == 0, result.output
        settings = SegmenterSettings.from_params({"views": 4, "merge": merge})
        expected = make_segmenter(settings, load_predictor(None))(dna).labels
        np.testing.assert_array_equal(tifffile.imread(out / "dna_labels.tif"), expected)
    bad = CliRunner().invoke(
        app, ["segment", str(path), "--out", str(tmp_path / "x"), "--merge", "median"]
    )
    assert bad.exit_code != 0 and "merge" in bad.output
