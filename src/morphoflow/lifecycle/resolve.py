"""Resolve a model reference (file path, MLflow URI, or the shipped default) to a local file."""

from __future__ import annotations

from pathlib import Path


def resolve_model_file(
    reference: str | Path | None, suffix: str | tuple[str, ...] = ".pt"
) -> Path | None:
    """A local model file for a reference.

    Args:
        reference: ``None``/``"default"`` (the caller's shipped default: returns None), a local
            path, or an MLflow URI (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``,
            ``runs:/RUN_ID/PATH``) whose artifacts are downloaded to MLflow's cache.
        suffix: File type(s) to look for inside a downloaded artifact folder, in order of
            preference.

    Returns:
        The file, or None for the default.

    Raises:
        FileNotFoundError: A local path does not exist, the artifacts hold no such file, or the
            tracking URI is a sqlite file that does not exist (nothing is created).
        ValueError: MLflow cannot resolve the URI (unknown model, alias, version or run); the
            message names the URI and the registry.
    """
    if reference is None or str(reference) in ("", "default"):
        return None
    text = str(reference)
    if text.startswith(("models:/", "runs:/")) or "://" in text:
        import mlflow

        registry = mlflow.get_tracking_uri()
        if registry.startswith("sqlite:///"):
            database = Path(registry.removeprefix("sqlite:///"))
            if not database.is_file():
                raise FileNotFoundError(
                    f"{text}: no MLflow registry at {database} (set MLFLOW_TRACKING_URI to the "
                    "registry that holds the model)"
                )
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=text))
        except mlflow.exceptions.MlflowException as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{text} cannot be resolved in {registry}: {first}") from exc
        suffixes = (suffix,) if isinstance(suffix, str) else tuple(suffix)
        candidates = (
            [local]
            if local.is_file()
            else [f for s in suffixes for f in sorted(local.rglob(f"*{s}"))]
        )
        if not candidates:
            raise FileNotFoundError(f"{text} holds no {' or '.join(suffixes)} model file")
        return candidates[0]
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    return path
