"""MLflow model registry: log an ONNX model, register a version, set aliases (never stages).

Every registered version carries, as model-version tags (strings):

- lineage: ``git_sha``, ``data_fingerprint`` (when known), ``training_run_id``,
  ``registered_at``;
- the export: ``model_kind`` (``segmentation`` | ``featurizer`` | ``activity``), ``onnx_opset``,
  ``input_names``, ``output_names``, ``parity_max_abs_diff``, ``parity_tolerance``,
  ``parity_passed`` (``true``/``false``; absent when no parity check was reported);
- evaluation scores passed in, as ``score.<metric>``;
- any further tag of the caller.

The logged MLflow model has a signature (tensor specs inferred from an example input and the
ONNX model's output on it; dynamic ONNX axes become -1).

Aliases: a new version becomes ``challenger``; it also becomes ``champion`` only when the model
has no champion yet *and* its parity check passed. Replacing a champion is the job of
:func:`morphoflow.lifecycle.promotion.promote` (gated on a frozen held-out set).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from morphoflow.onnx_export import DEFAULT_TOLERANCE

PARITY_TOLERANCE = DEFAULT_TOLERANCE
MODEL_KINDS = ("segmentation", "featurizer")
#: Kinds that can be registered. ``activity`` (the activity pipeline's ``activity-mo``) has no
#: held-out evaluation yet, so :mod:`.promotion` (which checks MODEL_KINDS) refuses to promote it.
REGISTERABLE_KINDS = (*MODEL_KINDS, "activity")
CHAMPION, CHALLENGER, PREVIOUS_CHAMPION = "champion", "challenger", "previous-champion"
#: Experiment of the runs that :func:`register_unet` starts when no run is active.
REGISTRY_EXPERIMENT = "morphoflow-registry"


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _graph_kind(inputs: list[str], outputs: list[str], metadata: Mapping[str, str]) -> str | None:
    if metadata.get("model_kind") in REGISTERABLE_KINDS:
        return metadata["model_kind"]
    if inputs == ["image"] and "probabilities" in outputs:
        return "segmentation"
    if inputs == ["crops"] and "features" in outputs:
        return "featurizer"
    return None


def _example_inputs(model: Any, metadata: Mapping[str, str]) -> dict[str, np.ndarray]:
    """A small deterministic input for every graph input (dynamic axes: 1 for the batch,
    4 x ``multiple`` for the others)."""
    rng = np.random.default_rng(0)
    side = 4 * int(metadata.get("multiple", 16))
    initializers = {i.name for i in model.graph.initializer}
    out = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = []
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                dims.append(int(dim.dim_value))
            else:
                dims.append(1 if axis == 0 else side)
        out[value.name] = rng.random(dims, dtype=np.float32)
    return out


def _signature(model: Any, path: Path, inputs: Mapping[str, np.ndarray]) -> Any:
    """ModelSignature from an example run; ONNX dynamic axes become -1."""
    import onnxruntime as ort
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    output_names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(output_names, session.run(output_names, dict(inputs)), strict=True))

    def dynamic(values: Any) -> dict[str, list[bool]]:
        return {
            v.name: [not d.HasField("dim_value") for d in v.type.tensor_type.shape.dim]
            for v in values
        }

    flags = {**dynamic(model.graph.input), **dynamic(model.graph.output)}

    def spec(name: str, array: np.ndarray) -> TensorSpec:
        shape = tuple(
            -1 if axis < len(flags.get(name, [])) and flags[name][axis] else int(size)
            for axis, size in enumerate(array.shape)
        )
        return TensorSpec(np.dtype(array.dtype), shape, name)

    return ModelSignature(
        inputs=Schema([spec(k, np.asarray(v)) for k, v in inputs.items()]),
        outputs=Schema([spec(k, np.asarray(v)) for k, v in outputs.items()]),
    )


def _pip_requirements() -> list[str]:
    """What serving the logged model needs: numpy, onnx and onnxruntime at the versions here."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for package in ("numpy", "onnx", "onnxruntime"):
        try:
            out.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            out.append(package)
    return out


def _lineage(run: Any, tags: Mapping[str, Any], key: str, run_tag: str) -> str | None:
    if tags.get(key) not in (None, ""):
        return str(tags[key])
    value = run.data.tags.get(run_tag)
    return str(value) if value else None


def register_onnx_model(
    onnx_path: str | Path,
    name: str,
    tags: Mapping[str, Any],
    set_champion_if_none: bool = True,
    *,
    model_kind: str | None = None,
    example_inputs: Mapping[str, np.ndarray] | None = None,
    scores: Mapping[str, float] | None = None,
    parity_tolerance: float = PARITY_TOLERANCE,
) -> dict[str, Any]:
    """Log an ONNX file as an MLflow model in the active run and register a new version.

    The new version gets the alias ``challenger``; when the registered model has no
    ``champion`` yet and the version's parity check passed, it also becomes ``champion``.
    Tags (see the module docstring) are set on the model version as strings. Lineage not given
    in ``tags`` is taken from the active run (``morphoflow.git_sha``,
    ``morphoflow.data_fingerprint`` set by the Kedro lineage hook), else computed (git sha of
    the installed package); ``training_run_id`` defaults to the active run.

    Args:
        onnx_path: The exported model (one file).
        name: Registered model name.
        tags: Extra model-version tags; ``parity_max_abs_diff`` (the exporter's result),
            ``git_sha``, ``data_fingerprint`` and ``training_run_id`` are read from here.
        set_champion_if_none: Make the version champion when there is none (and parity
            passed).
        model_kind: ``segmentation`` or ``featurizer``; default: from the ONNX metadata or the
            graph's input/output names.
        example_inputs: Graph input name -> example array for the signature; default: a small
            array per input built from the graph's shapes.
        scores: Evaluation scores, tagged ``score.<name>``.
        parity_tolerance: ``parity_passed`` is ``parity_max_abs_diff <= parity_tolerance``.

    Returns:
        ``{"name", "version", "aliases", "model_uri", "model_kind", "parity_passed"}``.

    Raises:
        RuntimeError: No active MLflow run.
        FileNotFoundError: No file at ``onnx_path``.
        ValueError: The model kind is unknown, or ``parity_max_abs_diff`` is not a number.
    """
    import mlflow
    import onnx
    from mlflow import MlflowClient

    from morphoflow.lineage import PACKAGE_DIR, git_revision

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError(
            "register_onnx_model needs an active MLflow run (kedro-mlflow starts one)"
        )
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"onnx_path not found: {onnx_path}")
    model = onnx.load(str(onnx_path))
    metadata = {p.key: p.value for p in model.metadata_props}
    initializers = {i.name for i in model.graph.initializer}
    input_names = [v.name for v in model.graph.input if v.name not in initializers]
    output_names = [v.name for v in model.graph.output]
    kind = model_kind or _graph_kind(input_names, output_names, metadata)
    if kind not in REGISTERABLE_KINDS:
        raise ValueError(
            f"model_kind must be one of {REGISTERABLE_KINDS} (could not infer it from {onnx_path}: "
            f"inputs {input_names}, outputs {output_names}), got {kind!r}"
        )
    opset = max(
        (int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0
    )
    examples = dict(example_inputs) if example_inputs else _example_inputs(model, metadata)
    signature = _signature(model, onnx_path, examples)

    full_run = mlflow.get_run(run.info.run_id)
    version_tags: dict[str, Any] = {k: v for k, v in tags.items() if v is not None}
    version_tags["git_sha"] = _lineage(full_run, tags, "git_sha", "morphoflow.git_sha") or (
        git_revision(PACKAGE_DIR)
    )
    fingerprint = _lineage(full_run, tags, "data_fingerprint", "morphoflow.data_fingerprint")
    if fingerprint:
        version_tags["data_fingerprint"] = fingerprint
    version_tags["training_run_id"] = tags.get("training_run_id") or run.info.run_id
    version_tags.update(
        {
            "model_kind": kind,
            "onnx_opset": opset,
            "input_names": ",".join(input_names),
            "output_names": ",".join(output_names),
            "registered_at": now_iso(),
            "onnx_sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        }
    )
    parity_passed: bool | None = None
    if tags.get("parity_max_abs_diff") not in (None, ""):
        try:
            diff = float(tags["parity_max_abs_diff"])
        except (TypeError, ValueError):
            raise ValueError(
                f"tags['parity_max_abs_diff'] must be a number, got {tags['parity_max_abs_diff']!r}"
            ) from None
        parity_passed = bool(diff <= float(parity_tolerance))  # NaN fails
        version_tags["parity_max_abs_diff"] = diff
        version_tags["parity_tolerance"] = float(parity_tolerance)
        version_tags["parity_passed"] = "true" if parity_passed else "false"
    for metric, value in (scores or {}).items():
        version_tags[f"score.{metric}"] = float(value)

    info = mlflow.onnx.log_model(
        model,
        name="model",
        registered_model_name=name,
        save_as_external_data=False,
        signature=signature,
        pip_requirements=_pip_requirements(),  # inferring them runs a subprocess (~2 s)
    )
    client = MlflowClient()
    version = getattr(info, "registered_model_version", None)
    if version is None:
        versions = client.search_model_versions(f"name='{name}' and run_id='{run.info.run_id}'")
        version = max(int(v.version) for v in versions)
    version = int(version)
    for key, value in version_tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))
    aliases = [CHALLENGER]
    client.set_registered_model_alias(name, CHALLENGER, str(version))
    try:
        client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        if set_champion_if_none and parity_passed:
            client.set_registered_model_alias(name, CHAMPION, str(version))
            aliases.append(CHAMPION)
            for key, value in {
                "promotion.decision": "promoted",
                "promotion.reason": "first version with a passing parity check (no champion)",
                "promotion.timestamp": now_iso(),
            }.items():
                client.set_model_version_tag(name, str(version), key, value)
    return {
        "name": name,
        "version": version,
        "aliases": aliases,
        "model_uri": info.model_uri,
        "model_kind": kind,
        "parity_passed": parity_passed,
    }


def register_unet(
    model_path: str | Path | None = None,
    name: str = "nuclei-unet",
    heldout: str | Path | None = None,
    tolerance: float = PARITY_TOLERANCE,
    extra_tags: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Export a nucleus U-Net to ONNX (parity-checked) and register it, in its own MLflow run.

    The run (experiment ``morphoflow-registry``, or nested in the active run) logs the source
    file's SHA-256 and metadata, the parity result, and the model. With ``heldout`` the exported
    model is also scored there (DSB 2018 score, 8-view TTA) and the score is tagged.

    Args:
        model_path: A U-Net file (``.pt`` from :func:`~morphoflow.segmentation.unet.save_unet`,
            e.g. a fine-tuned model), or None for the model shipped with morphoflow.
        name: Registered model name.
        heldout: Optional frozen segmentation set to score the model on.
        tolerance: Parity tolerance of the export.
        extra_tags: More model-version tags.

    Returns:
        :func:`register_onnx_model`'s dict plus ``run_id``, ``parity_max_abs_diff``, ``source``
        and (with ``heldout``) ``score``.

    Raises:
        FileNotFoundError: ``model_path`` does not exist.
        ValueError: Not a U-Net file, or the ONNX export fails its parity check (nothing is
            registered).
    """
    import tempfile

    import mlflow
    from mlflow import MlflowClient

    from morphoflow.lifecycle.export import export_unet_onnx, unet_parity_inputs
    from morphoflow.segmentation.unet import DEFAULT_MODEL_PATH, load_unet

    source = Path(model_path) if model_path is not None else DEFAULT_MODEL_PATH
    _, metadata = load_unet(source)  # clear errors for a missing / wrong file, before any run
    parent = mlflow.active_run()
    if parent is None:
        client = MlflowClient()
        experiment = client.get_experiment_by_name(REGISTRY_EXPERIMENT)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else client.create_experiment(REGISTRY_EXPERIMENT)
        )
        context = mlflow.start_run(experiment_id=experiment_id, run_name=f"register-{name}")
    else:
        context = mlflow.start_run(run_name=f"register-{name}", nested=True)
    with context as run, tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "nuclei_unet.onnx"
        export = export_unet_onnx(source, onnx_path, tolerance=tolerance)
        source_sha = hashlib.sha256(source.read_bytes()).hexdigest()
        mlflow.log_params(
            {
                "source_model": str(source),
                "source_sha256": source_sha,
                "registered_model_name": name,
                "onnx_opset": export["opset"],
            }
        )
        mlflow.log_metric("parity_max_abs_diff", export["parity_max_abs_diff"])
        mlflow.log_dict(metadata, "source_model_metadata.json")
        scores: dict[str, float] = {}
        if heldout is not None:
            from morphoflow.lifecycle.evaluate import evaluate_segmentation_onnx

            evaluation = evaluate_segmentation_onnx(onnx_path, heldout)
            scores[evaluation.metric] = evaluation.score
            mlflow.log_metric(f"heldout.{evaluation.metric}", evaluation.score)
        tags = {
            "parity_max_abs_diff": export["parity_max_abs_diff"],
            "source_model": source.name,
            "source_sha256": source_sha,
            "multiple": export["multiple"],
            **({"heldout_sha256": evaluation.heldout_digest} if heldout is not None else {}),
            **dict(extra_tags or {}),
        }
        example = unet_parity_inputs(((1, 4 * export["multiple"], 4 * export["multiple"]),))[0]
        registered = register_onnx_model(
            onnx_path,
            name,
            tags,
            model_kind="segmentation",
            example_inputs={"image": example},
            scores=scores,
            parity_tolerance=tolerance,
        )
    return {
        **registered,
        "run_id": run.info.run_id,
        "parity_max_abs_diff": export["parity_max_abs_diff"],
        "source": str(source),
        **({"score": scores} if scores else {}),
    }
