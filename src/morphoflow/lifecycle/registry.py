"""MLflow model registry: log an ONNX model, register a version, set aliases (never stages)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def register_onnx_model(
    onnx_path: str | Path,
    name: str,
    tags: dict[str, Any],
    set_champion_if_none: bool = True,
) -> dict[str, Any]:
    """Log an ONNX file as an MLflow model in the active run and register a new version.

    The new version gets the alias ``challenger``; when the registered model has no
    ``champion`` yet (its first version), it also becomes ``champion``. Every tag is set on the
    model version (values as strings).

    Returns:
        ``{"name", "version", "aliases", "model_uri"}``.

    Raises:
        RuntimeError: No active MLflow run.
    """
    import mlflow
    import onnx
    from mlflow import MlflowClient

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError(
            "register_onnx_model needs an active MLflow run (kedro-mlflow starts one)"
        )
    model = onnx.load(str(onnx_path))
    info = mlflow.onnx.log_model(
        model, name="model", registered_model_name=name, save_as_external_data=False
    )
    client = MlflowClient()
    versions = client.search_model_versions(f"name='{name}' and run_id='{run.info.run_id}'")
    version = max(int(v.version) for v in versions)
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))
    aliases = ["challenger"]
    client.set_registered_model_alias(name, "challenger", str(version))
    try:
        client.get_model_version_by_alias(name, "champion")
    except mlflow.exceptions.MlflowException:
        if set_champion_if_none:
            client.set_registered_model_alias(name, "champion", str(version))
            aliases.append("champion")
    return {"name": name, "version": version, "aliases": aliases, "model_uri": info.model_uri}
