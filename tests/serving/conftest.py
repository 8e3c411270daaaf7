"""Fixtures of the serving tests: exported ONNX models, a temporary MLflow registry, and a real
tritonserver process (from the nvidia-pytriton wheel) serving a repository built from it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from morphoflow.learning.model import (
    build_efficientnet_b0,
    export_featurizer_onnx,
    parity_inputs,
)
from morphoflow.lifecycle.export import export_unet_onnx
from morphoflow.serving.repository import build_repository, registry_onnx
from morphoflow.serving.server import TritonServer

CROP = 128


def _featurizer(path: Path, seed: int) -> tuple[Path, float]:
    """A random-init featuriser whose batch-norm statistics come from crop-like inputs (with
    the default statistics its block6a activations are ~1e-10 and any two models look equal)."""
    torch.manual_seed(seed)
    model = build_efficientnet_b0(n_classes=4)
    model.train()
    with torch.no_grad():
        for i in range(3):
            model(torch.from_numpy(parity_inputs(n=8, size=CROP, seed=100 + i)))
    model.eval()
    diff = export_featurizer_onnx(model, path, crop_size=CROP)
    return path, diff


def unloadable_featurizer(path: Path) -> Path:
    """An ONNX file with the featuriser's inputs/outputs whose op onnxruntime cannot run."""
    crops = helper.make_tensor_value_info("crops", TensorProto.FLOAT, ["batch", 5, CROP, CROP])
    features = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 672])
    node = helper.make_node("NoSuchOperator", ["crops"], ["features"], domain="morphoflow.test")
    graph = helper.make_graph([node], "broken", [crops], [features])
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("morphoflow.test", 1)],
    )
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, float]]:
    """The shipped U-Net and two different featurisers, exported with parity checks."""
    folder = tmp_path_factory.mktemp("onnx")
    unet = export_unet_onnx(None, folder / "unet.onnx")
    return {
        "unet": (folder / "unet.onnx", unet["parity_max_abs_diff"]),
        "featurizer_v1": _featurizer(folder / "featurizer_v1.onnx", seed=1),
        "featurizer_v2": _featurizer(folder / "featurizer_v2.onnx", seed=2),
    }


@pytest.fixture(scope="session")
def onnx_models(
    exported: dict[str, tuple[Path, float]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Paths of the exported models, plus one that onnxruntime cannot load."""
    broken = unloadable_featurizer(tmp_path_factory.mktemp("broken") / "featurizer_broken.onnx")
    return {**{k: v[0] for k, v in exported.items()}, "featurizer_broken": broken}


@pytest.fixture(scope="session")
def registry(
    tmp_path_factory: pytest.TempPathFactory, exported: dict[str, tuple[Path, float]]
) -> Iterator[str]:
    """A sqlite MLflow registry: nuclei-unet v1 (champion), cellpainting-cnn v1 (champion)
    and v2 (challenger)."""
    import mlflow

    from morphoflow.lifecycle.registry import register_onnx_model

    folder = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    # Artifacts go beside the database, not into MLflow's default ./mlruns under the working
    # directory (the repository when the suite runs).
    mlflow.create_experiment("serving-tests", artifact_location=(folder / "artifacts").as_uri())
    mlflow.set_experiment("serving-tests")
    try:
        for name, key in (
            ("nuclei-unet", "unet"),
            ("cellpainting-cnn", "featurizer_v1"),
            ("cellpainting-cnn", "featurizer_v2"),
        ):
            path, diff = exported[key]
            with mlflow.start_run():
                register_onnx_model(path, name, {"source": key, "parity_max_abs_diff": diff})
        yield uri
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def triton(
    tmp_path_factory: pytest.TempPathFactory, registry: str
) -> Iterator[tuple[TritonServer, Path]]:
    """A live server on free loopback ports serving the champions; stopped after the module."""
    repo = tmp_path_factory.mktemp("triton") / "repository"
    build_repository(
        repo,
        registry_onnx("nuclei-unet", "champion"),
        registry_onnx("cellpainting-cnn", "champion"),
    )
    server = TritonServer(repo, models=["nuclei_unet", "nuclei_tta", "featurizer"])
    with server:
        yield server, repo
    assert server.process is None
    assert server.shared_memory_files() == []
    assert stubs_gone(server.shm_prefix) == []


def stubs_gone(text: str, within_s: float = 15.0) -> list[int]:
    """PIDs still mentioning ``text`` after waiting up to ``within_s``: the python backend
    stubs exit on their own shortly after the server (measured: still alive right after a
    server that stopped seconds after its start, gone moments later)."""
    deadline = time.monotonic() + within_s
    while (left := processes_mentioning(text)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (python backend stubs carry the shm prefix)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def real_looking_dna(size: tuple[int, int] = (160, 144), seed: int = 0) -> np.ndarray:
    """A uint16 DNA image with nuclei from the synthetic nuclei generator."""
    from morphoflow.simulate.nuclei import random_nuclei_image

    image, _ = random_nuclei_image(np.random.default_rng(seed), size)
    return image
