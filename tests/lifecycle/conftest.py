"""Shared fixtures: a throwaway MLflow sqlite registry, exported U-Nets, frozen held-out sets."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from morphoflow.lifecycle.export import export_unet_onnx
from morphoflow.lifecycle.heldout import Heldout, freeze_segmentation_heldout
from morphoflow.onnx_export import export_onnx_with_parity
from morphoflow.profiling.crops import SiteCrops, crops_relpath, save_site_crops
from morphoflow.segmentation.unet import NucleusUNet


@pytest.fixture(scope="session")
def _empty_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised MLflow sqlite database (creating its tables takes seconds: done once)."""
    folder = tmp_path_factory.mktemp("registry_template")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
    return folder / "mlflow.db"


@pytest.fixture
def registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _empty_registry: Path
) -> Iterator[str]:
    """A fresh sqlite registry (and artifact store) in tmp_path, as the tracking URI."""
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns
    shutil.copyfile(_empty_registry, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)  # later tests must not read this test's registry


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="session")
def unet_onnx(onnx_dir: Path) -> tuple[Path, dict]:
    """The shipped U-Net exported once: (file, export report)."""
    path = onnx_dir / "shipped_unet.onnx"
    return path, export_unet_onnx(None, path)


@pytest.fixture(scope="session")
def random_unet_onnx(onnx_dir: Path) -> tuple[Path, dict]:
    """A U-Net with freshly initialised (untrained) weights: a much worse model."""
    torch.manual_seed(1)
    path = onnx_dir / "random_unet.onnx"
    return path, export_unet_onnx(NucleusUNet().eval(), path)


@pytest.fixture(scope="session")
def seg_heldout(tmp_path_factory: pytest.TempPathFactory) -> Heldout:
    """A small frozen segmentation set: 6 synthetic images of 96 x 96 pixels."""
    return freeze_segmentation_heldout(
        tmp_path_factory.mktemp("heldout") / "segmentation", n_images=6, size=96, seed=5
    )


class MeanPool(torch.nn.Module):
    """A featurizer whose features are per-channel mean, std and centre mean of the crops."""

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        centre = crops[:, :, 4:-4, 4:-4].mean(dim=(2, 3))
        return torch.cat([crops.mean(dim=(2, 3)), crops.std(dim=(2, 3)), centre], dim=1)


class Blind(torch.nn.Module):
    """A featurizer that looks only at the DNA channel, which no MoA of the store changes."""

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        dna = crops[:, 0]
        corner = dna[:, :2, :2].reshape(crops.shape[0], -1)
        return torch.cat([corner, dna.mean(dim=(1, 2))[:, None], dna.std(dim=(1, 2))[:, None]], 1)


def export_featurizer(module: torch.nn.Module, path: Path, size: int = 16) -> Path:
    rng = np.random.default_rng(0)
    example = torch.from_numpy(rng.uniform(-1, 1, (2, 5, size, size)).astype(np.float32))
    diff = export_onnx_with_parity(
        module,
        example,
        path,
        ["crops"],
        ["features"],
        {"crops": {0: "batch"}, "features": {0: "batch"}},
        [rng.uniform(-1, 1, (3, 5, size, size)).astype(np.float32)],
        metadata={"model_kind": "featurizer"},
    )
    assert diff <= 1e-4
    return path


def write_crop_store(root: Path, size: int = 16, seed: int = 0) -> tuple[Path, pd.DataFrame]:
    """A crop store of 2 plates: per plate 2 DMSO wells and 9 treatments of 3 MoAs.

    Every MoA brightens the centre of its own channel (ER, RNA, AGP) on top of noise and a
    per-plate offset, so a featurizer that looks at the crops' centre retrieves MoAs perfectly.
    """
    rng = np.random.default_rng(seed)
    wells = [("A01", "DMSO", "", "negcon"), ("A02", "DMSO", "", "negcon")]
    channel_of = {"moa_a": 1, "moa_b": 2, "moa_c": 3}
    for m, moa in enumerate(channel_of):
        wells += [(f"{'BCD'[m]}0{j + 1}", f"t{3 * m + j}", moa, "") for j in range(3)]
    rows = []
    crops_dir = root / "crops"
    for p, plate in enumerate(("P1", "P2")):
        for well, treatment, moa, control in wells:
            crops = rng.normal(100 + 30 * p, 5, (4, 5, size, size)).astype(np.float32)
            if moa:
                crops[:, channel_of[moa], size // 4 : -size // 4, size // 4 : -size // 4] += 80
            relative = crops_relpath(plate, well, 1)
            objects = pd.DataFrame({"ObjectNumber": np.arange(1, 5)})
            save_site_crops(
                crops_dir / relative,
                SiteCrops(crops, np.ones((4, size, size), np.uint8), objects),
            )
            for i in range(4):
                rows.append(
                    {
                        "Metadata_Source": "src1",
                        "Metadata_Plate": plate,
                        "Metadata_Well": well,
                        "Metadata_Site": 1,
                        "Metadata_Treatment": treatment,
                        "Metadata_MoA": moa,
                        "Metadata_ControlType": control,
                        "Metadata_ObjectNumber": i + 1,
                        "Path_Crops": relative,
                        "Metadata_CropIndex": i,
                    }
                )
    index = pd.DataFrame(rows)
    index.to_parquet(root / "crop_index.parquet", index=False)
    return crops_dir, index


def list_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())
