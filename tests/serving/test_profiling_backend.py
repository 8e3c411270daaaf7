"""The profiling pipeline gives the same profiles with ``inference.backend=triton`` as locally."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from morphoflow.serving.server import TritonServer
from tests.pipelines.conftest import (  # noqa: F401 - fixtures
    kedro_project,
    run_pipeline,
    tiny_simulated_screen,
)

pytestmark = [pytest.mark.triton, pytest.mark.slow]


def _successes(server: TritonServer, model: str) -> float:
    """Triton's count of successful requests of a model (Prometheus metrics)."""
    import urllib.request

    with urllib.request.urlopen(server.metrics_url, timeout=5) as response:
        text = response.read().decode()
    prefix = f'nv_inference_request_success{{model="{model}"'
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def test_profiling_against_triton_equals_local(
    triton: tuple[TritonServer, Path],
    onnx_models: dict[str, Path],
    kedro_project: Path,  # noqa: F811
    run_pipeline,  # noqa: F811
    tiny_simulated_screen: Path,  # noqa: F811
) -> None:
    server, _ = triton
    common = {
        "screen.root": tiny_simulated_screen,
        "nuclei.views": 8,
        "features.extractor": "cnn",
        "batch_correction.null_size": 50,
        "batch_correction.shuffles": 2,
    }
    outputs = ["nuclei", "04_feature/profiles_well_raw.parquet"]

    def read(name: str) -> pd.DataFrame:
        if name != "nuclei":
            return pd.read_parquet(kedro_project / "data" / name)
        manifest = pd.read_csv(kedro_project / "data/08_reporting/profiling/plates.csv")
        store = kedro_project / "data/04_feature/plates"
        return pd.concat(
            [pd.read_parquet(store / p / "nuclei.parquet") for p in manifest["partition"]],
            ignore_index=True,
        )

    run_pipeline(
        "profiling",
        {
            **common,
            "nuclei.model": onnx_models["unet"],
            "features.model": onnx_models["featurizer_v1"],
        },
    )
    local = {name: read(name) for name in outputs}
    shutil.rmtree(kedro_project / "data")
    served_run = run_pipeline(
        "profiling",
        {
            **common,
            "inference.backend": "triton",
            "inference.url": server.grpc_url,
            # a local model given by mistake is not silently used, nor silently dropped
            "features.model": onnx_models["featurizer_v2"],
        },
    )
    log = " ".join((served_run.stdout + served_run.stderr).split())  # undo the log's line wrap
    assert "WARNING" in log and "is ignored with inference.backend=triton" in log
    served = {name: read(name) for name in outputs}

    nuclei_local, nuclei_served = local[outputs[0]], served[outputs[0]]
    assert len(nuclei_local) > 20
    pd.testing.assert_frame_equal(nuclei_served, nuclei_local, check_exact=False, atol=1e-5)
    wells_local, wells_served = local[outputs[1]], served[outputs[1]]
    features = [c for c in wells_local.columns if c.startswith("CNN_")]
    assert len(features) == 672
    assert np.abs(wells_local[features].to_numpy()).mean() > 1e-3
    pd.testing.assert_frame_equal(
        wells_served, wells_local, check_exact=False, rtol=1e-4, atol=1e-5
    )
