"""A real tritonserver serving a repository built from a temporary registry.

Marked ``triton`` (integration): started once per module on free loopback ports; every test
talks to it through tritonclient over gRPC and HTTP, the way production clients do.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from morphoflow.backbone import scale_crops
from morphoflow.profiling.cnn import OnnxFeaturizer
from morphoflow.segmentation.onnx_model import OnnxUNet
from morphoflow.segmentation.segmenter import segment_nuclei
from morphoflow.segmentation.settings import SegmenterSettings, make_segmenter
from morphoflow.serving.client import TritonClient, TritonFeaturizer, TritonRequestError
from morphoflow.serving.deploy import DeploymentFailed, deploy_version
from morphoflow.serving.repository import registry_onnx, served_versions
from morphoflow.serving.server import TritonServer
from tests.serving.conftest import real_looking_dna

pytestmark = pytest.mark.triton
PROTOCOLS = ("grpc", "http")


def _client(server: TritonServer, protocol: str) -> TritonClient:
    url = server.grpc_url if protocol == "grpc" else server.http_url
    return TritonClient(url, protocol=protocol, timeout_s=120, retries=1)


def _crops(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.gamma(2.0, 300.0, (n, 5, 128, 128)).astype(np.float32)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("views", [1, 8])
def test_served_tta_equals_offline_tta(
    triton: tuple[TritonServer, Path], onnx_models: dict[str, Path], protocol: str, views: int
) -> None:
    server, _ = triton
    image = real_looking_dna((150, 170), seed=3)
    offline = segment_nuclei(OnnxUNet(onnx_models["unet"]), image, views=views)
    served = _client(server, protocol).segment(image, views=views)
    assert offline.labels.max() > 3
    np.testing.assert_array_equal(served.labels, offline.labels)
    np.testing.assert_allclose(served.probabilities, offline.probabilities, atol=1e-5)
    np.testing.assert_allclose(served.agreement, offline.agreement, atol=1e-5)
    assert served.views == offline.views


@pytest.mark.parametrize("views", [1, 8])
def test_served_empty_field_has_no_nuclei(
    triton: tuple[TritonServer, Path], onnx_models: dict[str, Path], views: int
) -> None:
    # Issue 12, item 7: nuclei_tta normalises with the same code as offline segmentation, so a
    # background-only tile with a 20 % illumination gradient gives no nucleus there either.
    from morphoflow.simulate.nuclei import empty_field

    server, _ = triton
    image = empty_field(np.random.default_rng(1), (128, 128), background=2000.0)
    served = _client(server, "grpc").segment(image, views=views)
    offline = segment_nuclei(OnnxUNet(onnx_models["unet"]), image, views=views)
    assert served.labels.shape == (128, 128)
    assert served.labels.max() == 0 and offline.labels.max() == 0
    np.testing.assert_allclose(served.probabilities, offline.probabilities, atol=1e-5)


def test_served_segmenter_equals_local_segmenter_for_the_same_settings(
    triton: tuple[TritonServer, Path],
    onnx_models: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """make_segmenter with the Triton client or the local ONNX model: the same labels, for
    counts that are no symmetry group (3 views) and for named views that the server serves."""
    server, _ = triton
    image = real_looking_dna((96, 112), seed=5)
    client = _client(server, "grpc")
    for views in (3, ["identity", "flip_lr"]):
        settings = SegmenterSettings(views=views, threshold=0.55, min_diameter=3.5)
        served = make_segmenter(settings, client)(image)
        local = make_segmenter(settings, OnnxUNet(onnx_models["unet"]))(image)
        assert served.views == local.views == settings.views
        assert local.labels.max() > 0
        np.testing.assert_array_equal(served.labels, local.labels)
    # views the server cannot run are refused by name, never replaced by "the first n"
    with pytest.raises(ValueError, match=r"views \['rot90'\] cannot be served"):
        make_segmenter(SegmenterSettings(views=["rot90"]), client)(image)
    # a model setting cannot change what the server runs: said, not silently dropped
    make_segmenter(SegmenterSettings(model="other.onnx"), client)
    assert "model=other.onnx is ignored" in caplog.text
    # every TTA merge is a request option: served == local for each
    from morphoflow.segmentation.tta import SEMANTIC_MERGES

    for merge in SEMANTIC_MERGES:
        settings = SegmenterSettings(views=8, merge=merge)
        served = make_segmenter(settings, client)(image)
        local = make_segmenter(settings, OnnxUNet(onnx_models["unet"]))(image)
        np.testing.assert_array_equal(served.labels, local.labels, err_msg=merge)
    with pytest.raises(TritonRequestError, match="merge"):
        client.segment(image, merge="median")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_served_object_filters_are_request_options(
    triton: tuple[TritonServer, Path], onnx_models: dict[str, Path], protocol: str
) -> None:
    """min_diameter / max_diameter / discard_border_objects / diameter sent with the request
    remove exactly what the local segmenter removes with the same settings."""
    from morphoflow.segmentation.postprocess import filter_objects
    from tests.segmentation.test_object_filters import border_scene, touches_border

    server, _ = triton
    image = border_scene()
    client = _client(server, protocol)
    unet = OnnxUNet(onnx_models["unet"])
    default = client.segment(image, views=1, min_diameter=2.0)  # see border_scene's fixture
    assert default.labels.max() == 6 and touches_border(default.labels)
    for options in (
        {"discard_border_objects": True},
        {"min_diameter": 8.0, "max_diameter": 25.0},
        {"min_diameter": 8.0, "max_diameter": 25.0, "discard_border_objects": True},
        {"diameter": 30.0},
    ):
        served = client.segment(image, views=1, **options)
        local = make_segmenter(SegmenterSettings(views=1, **options), unet)(image)
        np.testing.assert_array_equal(served.labels, local.labels, err_msg=str(options))
        assert len(served.agreement) == served.labels.max()
    both = client.segment(
        image, views=1, min_diameter=8, max_diameter=25, discard_border_objects=True
    )
    np.testing.assert_array_equal(
        both.labels, filter_objects(default.labels, 8, 25, discard_border_objects=True)
    )
    assert both.labels.max() == 3
    # a request without options takes CLI_DEFAULTS: border objects kept
    plain = client.infer("nuclei_tta", {"image": image.astype(np.float32)}, ["labels"])
    assert touches_border(plain["labels"])
    # a bad option is refused by name; the server keeps serving
    inputs = {"image": image.astype(np.float32), "min_diameter": np.array([9.0])}
    with pytest.raises(TritonRequestError, match=r"max_diameter \(8.0\) must be >= min_diameter"):
        client.infer("nuclei_tta", {**inputs, "max_diameter": np.array([8.0])}, ["labels"])
    with pytest.raises(TritonRequestError, match="beyond max_image_side"):
        client.segment(image, views=1, diameter=0.5)  # 128 px x 44 > 4096 px
    assert client.segment(image, views=1).labels.max() == 6


def test_suggest_contours_against_triton_matches_offline(
    triton: tuple[TritonServer, Path], onnx_models: dict[str, Path], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from morphoflow.cli import app

    server, _ = triton
    tifffile.imwrite(tmp_path / "site.tif", real_looking_dna((128, 128), seed=5))
    (tmp_path / "points.csv").write_text("id,x,y\na,64,64\nb,20.5,90\nc,-1,3\n")
    outputs = {}
    for name, backend in (
        ("offline", ["--model", str(onnx_models["unet"])]),
        ("served", ["--triton-url", server.grpc_url]),
    ):
        args = ["suggest-contours", str(tmp_path / "site.tif"), "--points"]
        args += [str(tmp_path / "points.csv"), "--out", str(tmp_path / name), *backend]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        outputs[name] = json.loads((tmp_path / name / "site_suggestions.json").read_text())
    assert outputs["served"]["points"] == outputs["offline"]["points"]
    assert outputs["served"]["points"][2]["reason"].startswith("outside the image")


def test_segment_cli_against_triton_matches_offline(
    triton: tuple[TritonServer, Path], onnx_models: dict[str, Path], tmp_path: Path
) -> None:
    server, _ = triton
    tifffile.imwrite(tmp_path / "site.tif", real_looking_dna((128, 128), seed=5))
    exe = str(Path(sys.executable).with_name("morphoflow"))
    offline = [exe, "segment", str(tmp_path / "site.tif"), "--out", str(tmp_path / "offline")]
    subprocess.run([*offline, "--model", str(onnx_models["unet"])], check=True, timeout=300)
    served = [exe, "segment", str(tmp_path / "site.tif"), "--out", str(tmp_path / "served")]
    subprocess.run([*served, "--triton-url", server.grpc_url], check=True, timeout=300)
    a = tifffile.imread(tmp_path / "offline" / "site_labels.tif")
    b = tifffile.imread(tmp_path / "served" / "site_labels.tif")
    assert a.max() > 0
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_served_features_equal_onnxruntime(
    triton: tuple[TritonServer, Path], onnx_models: dict[str, Path], protocol: str
) -> None:
    server, _ = triton
    crops = _crops(37)
    local = OnnxFeaturizer(onnx_models["featurizer_v1"])(crops)
    served = TritonFeaturizer(_client(server, protocol), batch_size=16)(crops)
    assert list(served.columns) == list(local.columns)
    assert np.abs(local.to_numpy()).mean() > 1e-3  # real activations, not numerical dust
    np.testing.assert_allclose(served.to_numpy(), local.to_numpy(), rtol=1e-4, atol=1e-5)


def _raw_infer(client: TritonClient, model: str, name: str, array: np.ndarray, dtype: str):
    module = client._module
    tensor = module.InferInput(name, list(array.shape), dtype)
    tensor.set_data_from_numpy(array)
    return client._call(model, lambda: client._client.infer(model, [tensor]))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(
    triton: tuple[TritonServer, Path], protocol: str
) -> None:
    server, _ = triton
    client = _client(server, protocol)
    with pytest.raises(TritonRequestError, match="unexpected shape for input 'crops'"):
        client.infer("featurizer", {"crops": np.zeros((2, 5, 64, 64), np.float32)}, ["features"])
    with pytest.raises(TritonRequestError, match="(?i)data.?type|datatype|FP32"):
        _raw_infer(client, "featurizer", "crops", np.zeros((2, 5, 128, 128), np.int32), "INT32")
    # Triton's own check of an empty batch (its wording differs between protocols)
    with pytest.raises(TritonRequestError, match="(?i)batch|byte size mismatch"):
        client.infer("featurizer", {"crops": np.zeros((0, 5, 128, 128), np.float32)}, ["features"])
    with pytest.raises(ValueError, match="non-empty"):
        client.featurize(np.zeros((0, 5, 128, 128), np.float32))
    with pytest.raises(TritonRequestError, match="exceeds max_image_side 4096"):
        client.infer("nuclei_tta", {"image": np.zeros((4100, 16), np.float32)}, ["labels"])
    with pytest.raises(TritonRequestError, match="NaN or infinite"):
        client.infer("nuclei_tta", {"image": np.full((32, 32), np.nan, np.float32)}, ["labels"])
    # one views rule (tta.select_views, through SegmenterSettings) here and offline: 1..8
    with pytest.raises(TritonRequestError, match=r"views must be in 1\.\.8, got 9"):
        image = np.ones((32, 32), np.float32)
        client.infer("nuclei_tta", {"image": image, "views": np.array([9], np.int32)}, ["labels"])
    with pytest.raises(TritonRequestError, match=r"threshold must be in \(0, 1\)"):
        client.infer(
            "nuclei_tta", {"image": image, "threshold": np.ones(1, np.float32)}, ["labels"]
        )
    # still serving, on every model
    assert client.is_ready()
    assert client.featurize(scale_crops(_crops(2))).shape == (2, 672)
    assert client.segment(real_looking_dna((64, 64)), views=2).labels.shape == (64, 64)


def test_unreachable_server_is_reported_after_retries() -> None:
    from morphoflow.serving.client import TritonUnavailableError
    from morphoflow.serving.server import free_port

    client = TritonClient(f"127.0.0.1:{free_port()}", timeout_s=2, retries=2, backoff_s=0.05)
    with pytest.raises(TritonUnavailableError, match="unreachable after 3 attempts"):
        client.featurize(scale_crops(_crops(1)))


def test_deploy_without_a_server_changes_nothing(
    onnx_models: dict[str, Path], tmp_path: Path
) -> None:
    from morphoflow.serving.repository import RegistryModel, build_repository
    from morphoflow.serving.server import free_port

    repo = tmp_path / "repo"
    build_repository(repo, None, RegistryModel("cellpainting-cnn", 1, onnx_models["featurizer_v1"]))
    before = (repo / "featurizer" / "config.pbtxt").read_text()
    client = TritonClient(f"127.0.0.1:{free_port()}", retries=0)
    with pytest.raises(DeploymentFailed, match="no Triton server answers"):
        deploy_version(client, repo, "featurizer", onnx_models["featurizer_v2"], 2)
    assert (repo / "featurizer" / "config.pbtxt").read_text() == before
    assert not (repo / "featurizer" / "2").exists()


def test_hot_swap_rollback_and_failed_deployment(
    triton: tuple[TritonServer, Path], onnx_models: dict[str, Path], registry: str
) -> None:
    server, repo = triton
    client = _client(server, "grpc")
    crops = _crops(4, seed=9)
    v1 = OnnxFeaturizer(onnx_models["featurizer_v1"])(crops).to_numpy()
    v2 = OnnxFeaturizer(onnx_models["featurizer_v2"])(crops).to_numpy()
    assert np.abs(v1 - v2).mean() > 1e-2
    served = TritonFeaturizer(client)
    assert client.model_versions("featurizer") == [1]

    challenger = registry_onnx("cellpainting-cnn", "challenger")
    done = deploy_version(client, repo, "featurizer", challenger.onnx_path, challenger.version)
    assert (done.previous_versions, done.live_versions) == ([1], [2])
    np.testing.assert_allclose(served(crops).to_numpy(), v2, rtol=1e-4, atol=1e-5)

    with pytest.raises(DeploymentFailed, match="keeps serving \\[2\\]"):
        deploy_version(client, repo, "featurizer", onnx_models["featurizer_broken"], 3)
    assert not (repo / "featurizer" / "3").exists()
    assert served_versions(repo / "featurizer") == [2]
    np.testing.assert_allclose(served(crops).to_numpy(), v2, rtol=1e-4, atol=1e-5)

    # rollback = deploying the previous version again
    done = deploy_version(client, repo, "featurizer", onnx_models["featurizer_v1"], 1)
    assert done.live_versions == [1]
    np.testing.assert_allclose(served(crops).to_numpy(), v1, rtol=1e-4, atol=1e-5)


def test_nuclei_tta_follows_a_hot_swapped_unet(
    triton: tuple[TritonServer, Path], onnx_models: dict[str, Path], tmp_path: Path
) -> None:
    """The BLS model calls whatever nuclei_unet version is live: no reload of nuclei_tta."""
    import torch

    from morphoflow.lifecycle.export import export_unet_onnx
    from morphoflow.segmentation.unet import NucleusUNet

    server, repo = triton
    client = _client(server, "grpc")
    image = real_looking_dna((96, 96), seed=11)
    trained = client.segment(image, views=2)
    torch.manual_seed(0)
    export_unet_onnx(NucleusUNet(), tmp_path / "untrained.onnx")
    untrained = OnnxUNet(tmp_path / "untrained.onnx")

    assert deploy_version(
        client, repo, "nuclei_unet", tmp_path / "untrained.onnx", 5
    ).live_versions == [5]
    swapped = client.segment(image, views=2)
    np.testing.assert_allclose(
        swapped.probabilities, segment_nuclei(untrained, image, views=2).probabilities, atol=1e-5
    )
    assert not np.allclose(swapped.probabilities, trained.probabilities, atol=1e-2)
    assert client.model_versions("nuclei_tta") == [1]

    # roll back to the trained model: the old results again
    assert deploy_version(client, repo, "nuclei_unet", onnx_models["unet"], 1).live_versions == [1]
    np.testing.assert_array_equal(client.segment(image, views=2).labels, trained.labels)


def test_deploy_cli_uses_the_registry(triton: tuple[TritonServer, Path], registry: str) -> None:
    import os

    server, repo = triton

    def deploy(*args: str) -> dict:
        result = subprocess.run(
            [str(Path(sys.executable).with_name("morphoflow")), "triton", "deploy"]
            + ["cellpainting-cnn", "--repo", str(repo), *args],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "MLFLOW_TRACKING_URI": registry},
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    report = deploy("--alias", "challenger", "--url", f"http://{server.http_url}")
    assert report["served_as"] == "featurizer"
    assert report["live_versions"] == [2]
    assert deploy("--version", "1", "--url", server.grpc_url)["live_versions"] == [1]


def test_metrics_endpoint_counts_inferences(triton: tuple[TritonServer, Path]) -> None:
    import urllib.request

    server, _ = triton
    with urllib.request.urlopen(server.metrics_url, timeout=5) as response:
        text = response.read().decode()
    assert 'nv_inference_request_success{model="nuclei_tta"' in text


def test_triton_client_notebook_runs(
    triton: tuple[TritonServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.notebooks import run_notebook

    server, _ = triton
    monkeypatch.setenv("MORPHOFLOW_TRITON_URL", server.grpc_url)
    text = run_notebook("02_triton_client.ipynb")
    assert "(4, 672) float32" in text
    assert "8 views:" in text
