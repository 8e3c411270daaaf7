"""Hot deployment of a model version into a live Triton repository, with fallback."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from morphoflow.atomic import write_text_atomic
from morphoflow.serving.client import TritonClient, TritonRequestError
from morphoflow.serving.repository import add_onnx_version, served_versions


class DeploymentFailed(RuntimeError):
    """Triton could not load the new version; it keeps serving the previous one."""


@dataclass(frozen=True)
class Deployment:
    """What a deployment changed."""

    model: str
    version: int
    previous_versions: list[int]
    live_versions: list[int]


def deploy_version(
    client: TritonClient, repository: str | Path, model: str, onnx_path: str | Path, version: int
) -> Deployment:
    """Write ``version`` into the live repository, point the config at it and hot-load it.

    Triton loads the new version before it drops the old one. When the load fails, the
    previous config is restored and a version folder this call created is removed, so the
    repository again describes what Triton serves; Triton itself keeps serving the old version.

    Raises:
        ValueError: The model is not in the repository, or the ONNX file does not fit it.
        DeploymentFailed: No server answers (nothing is changed), or Triton refused the new
            version (its message included; the repository is restored).
    """
    model_dir = Path(repository) / model
    config = model_dir / "config.pbtxt"
    if not config.exists():
        raise ValueError(f"{model_dir} is not served (no config.pbtxt): build the repository first")
    previous = served_versions(model_dir)
    old_config = config.read_text()
    version_dir = model_dir / str(int(version))
    existed = version_dir.exists()
    if not client.is_live():
        raise DeploymentFailed(f"no Triton server answers at {client.url}: nothing was changed")
    add_onnx_version(repository, model, onnx_path, version)

    def restore() -> None:
        write_text_atomic(config, old_config)
        if not existed:
            shutil.rmtree(version_dir, ignore_errors=True)

    try:
        client.load_model(model)
    except TritonRequestError as exc:
        restore()
        raise DeploymentFailed(
            f"Triton could not load {model} version {version}; it keeps serving "
            f"{client.model_versions(model)}: {exc}"
        ) from exc
    except BaseException:
        restore()  # e.g. the server went away: the repository still describes what it served
        raise
    return Deployment(model, int(version), previous, client.model_versions(model))
