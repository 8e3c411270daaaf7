"""The one-off preparation of the independent DSB 2018 test image (benchmarks/prepare_dsb2018_image.py)."""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "prepare_dsb2018_image.py"


@pytest.fixture(scope="module")
def prepare():
    spec = importlib.util.spec_from_file_location("prepare_dsb2018_image", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wheel(path: Path, members: dict[str, np.ndarray]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in members.items():
            tmp = path.with_suffix(".tmp.tif")
            tifffile.imwrite(tmp, array)
            archive.write(tmp, name)
            tmp.unlink()
    return path


def test_extracts_image_mask_and_provenance(prepare, tmp_path: Path) -> None:
    image = np.arange(512 * 512, dtype=np.uint16).reshape(512, 512)
    mask = np.zeros((512, 512), np.uint16)
    mask[10:20, 10:20], mask[100:130, 40:60] = 1, 2
    wheel = _wheel(
        tmp_path / "stardist-0.9.2-x.whl",
        {prepare.MEMBERS["image.tif"]: image, prepare.MEMBERS["image_mask.tif"]: mask},
    )
    out = prepare.main([str(wheel), "--out", str(tmp_path / "dsb")])
    assert np.array_equal(tifffile.imread(out / "image.tif"), image)
    assert np.array_equal(tifffile.imread(out / "image_mask.tif"), mask)
    provenance = json.loads((out / "PROVENANCE.json").read_text())
    assert provenance["n_nuclei"] == 2 and provenance["wheel"] == wheel.name
    assert "CC0" in provenance["terms"] and set(provenance["sha256"]) == {
        "image.tif",
        "image_mask.tif",
    }


def test_a_wheel_without_the_images_names_the_member_and_writes_nothing(
    prepare, tmp_path: Path
) -> None:
    wheel = _wheel(tmp_path / "other.whl", {prepare.MEMBERS["image.tif"]: np.zeros((512, 512))})
    with pytest.raises(SystemExit, match="mask2d.tif"):
        prepare.main([str(wheel), "--out", str(tmp_path / "dsb")])
    assert list(tmp_path.iterdir()) == [wheel]
