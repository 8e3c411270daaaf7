"""Triton model repository from ONNX files or from the MLflow registry.

Layout (N = the registry version of the model)::

    nuclei_unet/config.pbtxt        nuclei_unet/N/model.onnx   (+ model.py on the cpu target)
    featurizer/config.pbtxt         featurizer/N/model.onnx    (+ model.py on the cpu target)
    nuclei_tta/config.pbtxt         nuclei_tta/1/model.py      (BLS: TTA around nuclei_unet)

Two targets share the layout:

- ``gpu``: ``backend: "onnxruntime"``, ``KIND_GPU``, dynamic batching, optional TensorRT
  accelerator: for NVIDIA's Triton image in production.
- ``cpu``: ``backend: "python"`` running the same ``model.onnx`` with onnxruntime
  (:mod:`morphoflow.serving.triton_models.onnx_runtime`): what the nvidia-pytriton wheel's
  server runs on a machine without GPU.

``nuclei_tta`` is a python-backend BLS model on both targets: it normalises a raw image, sends
the dihedral views as one batch to ``nuclei_unet``, de-augments, merges and post-processes with
:mod:`morphoflow.segmentation.segmenter` (the offline code, imported, not copied).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from morphoflow.atomic import atomic_dir, write_text_atomic

SEGMENTATION_MODEL = "nuclei_unet"
TTA_MODEL = "nuclei_tta"
FEATURIZER_MODEL = "featurizer"
TARGETS = ("cpu", "gpu")
_TEMPLATES = Path(__file__).parent / "triton_models"
_ONNX_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 11: "TYPE_FP64", 6: "TYPE_INT32", 7: "TYPE_INT64"}


@dataclass(frozen=True)
class Tensor:
    """A model input or output: name, Triton data type, dims without the batch axis."""

    name: str
    data_type: str
    dims: tuple[int, ...]
    optional: bool = False

    def pbtxt(self) -> str:
        dims = ", ".join(str(d) for d in self.dims)
        optional = " optional: true" if self.optional else ""
        return f'  {{ name: "{self.name}" data_type: {self.data_type} dims: [ {dims} ]{optional} }}'


@dataclass(frozen=True)
class OnnxModelInfo:
    """What the repository needs to know about an ONNX file."""

    kind: str  # "segmentation" | "featurizer"
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    metadata: dict[str, str] = field(default_factory=dict)


def inspect_onnx(path: str | Path) -> OnnxModelInfo:
    """Inputs, outputs (batch axis dropped) and kind of an exported morphoflow model.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a morphoflow segmentation (``image`` -> ``probabilities``) or
            featuriser (``crops`` -> ``features``) graph, or a fixed batch axis.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    graph = onnx.load(str(path), load_external_data=False)

    def tensors(values: Iterable[onnx.ValueInfoProto]) -> tuple[Tensor, ...]:
        out = []
        for value in values:
            kind = value.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in kind.shape.dim]
            if not dims or dims[0] != -1:
                raise ValueError(f"{path}: {value.name} needs a dynamic batch axis, has {dims}")
            dtype = _ONNX_TYPES.get(kind.elem_type)
            if dtype is None:
                raise ValueError(f"{path}: {value.name} has unsupported element type")
            out.append(Tensor(value.name, dtype, tuple(dims[1:])))
        return tuple(out)

    initializers = {i.name for i in graph.graph.initializer}
    inputs = tensors(v for v in graph.graph.input if v.name not in initializers)
    outputs = tensors(graph.graph.output)
    names = ({t.name for t in inputs}, {t.name for t in outputs})
    if names == ({"image"}, {"probabilities"}):
        kind = "segmentation"
    elif names == ({"crops"}, {"features"}):
        kind = "featurizer"
    else:
        raise ValueError(
            f"{path}: inputs {sorted(names[0])} -> outputs {sorted(names[1])} is neither a "
            "segmentation model (image -> probabilities) nor a featuriser (crops -> features)"
        )
    metadata = {p.key: p.value for p in graph.metadata_props}
    return OnnxModelInfo(kind, inputs, outputs, metadata)


@dataclass(frozen=True)
class ServingSettings:
    """Knobs of the generated configurations."""

    target: str = "cpu"
    max_batch_size: int = 0  # 0 = per kind: 16 (segmentation), 256 (featuriser)
    instances: int = 1
    queue_delay_us: int = 2000
    tensorrt: bool = False  # gpu target: TensorRT execution accelerator (FP16)
    intra_op_threads: int = 0  # cpu target: onnxruntime threads per instance (0 = default)
    tta_instances: int = 2
    max_image_side: int = 4096  # nuclei_tta refuses larger images
    tile: int = 512
    overlap: int = 64

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")

    def batch_for(self, kind: str) -> int:
        return self.max_batch_size or (16 if kind == "segmentation" else 256)


def _parameters(values: dict[str, object]) -> str:
    return "\n".join(
        f'parameters: {{ key: "{k}" value: {{ string_value: "{v}" }} }}' for k, v in values.items()
    )


def onnx_model_config(
    name: str, info: OnnxModelInfo, settings: ServingSettings, version: int
) -> str:
    """``config.pbtxt`` of an ONNX model for the settings' target, serving ``version`` only.

    A specific version policy (not "latest") makes a rollback to an older registry version a
    config change like any other deployment.
    """
    inputs = ",\n".join(t.pbtxt() for t in info.inputs)
    outputs = ",\n".join(t.pbtxt() for t in info.outputs)
    lines = [f'name: "{name}"']
    if settings.target == "gpu":
        lines += ['backend: "onnxruntime"', 'default_model_filename: "model.onnx"']
    else:
        lines += ['backend: "python"']
    lines += [
        f"max_batch_size: {settings.batch_for(info.kind)}",
        f"input [\n{inputs}\n]",
        f"output [\n{outputs}\n]",
        f"version_policy: {{ specific: {{ versions: [ {int(version)} ] }} }}",
        f"dynamic_batching {{ max_queue_delay_microseconds: {settings.queue_delay_us} }}",
    ]
    if settings.target == "gpu":
        lines.append(
            f"instance_group [ {{ kind: KIND_GPU count: {settings.instances} gpus: [ 0 ] }} ]"
        )
        if settings.tensorrt:
            lines.append(
                "optimization { execution_accelerators { gpu_execution_accelerator: [ "
                '{ name: "tensorrt" parameters { key: "precision_mode" value: "FP16" } '
                'parameters { key: "max_workspace_size_bytes" value: "1073741824" } } ] } }'
            )
    else:
        lines.append(f"instance_group [ {{ kind: KIND_CPU count: {settings.instances} }} ]")
        lines.append(
            _parameters({"onnx_file": "model.onnx", "intra_op_threads": settings.intra_op_threads})
        )
    lines.append(_parameters({"morphoflow_kind": info.kind}))
    return "\n".join(lines) + "\n"


def tta_model_config(
    settings: ServingSettings, segmentation_model: str = SEGMENTATION_MODEL, multiple: int = 16
) -> str:
    """``config.pbtxt`` of the ``nuclei_tta`` BLS model (python backend on both targets)."""
    inputs = [
        Tensor("image", "TYPE_FP32", (-1, -1)),
        Tensor("views", "TYPE_INT32", (1,), optional=True),
        Tensor("threshold", "TYPE_FP32", (1,), optional=True),
        Tensor("min_diameter", "TYPE_FP64", (1,), optional=True),
        Tensor("max_diameter", "TYPE_FP64", (1,), optional=True),
        Tensor("discard_border_objects", "TYPE_BOOL", (1,), optional=True),
        Tensor("diameter", "TYPE_FP64", (1,), optional=True),
        Tensor("merge", "TYPE_STRING", (1,), optional=True),
    ]
    outputs = [
        Tensor("probabilities", "TYPE_FP32", (3, -1, -1)),
        Tensor("labels", "TYPE_UINT32", (-1, -1)),
        Tensor("agreement", "TYPE_FP32", (-1,)),
    ]
    return (
        "\n".join(
            [
                f'name: "{TTA_MODEL}"',
                'backend: "python"',
                "max_batch_size: 0",
                "input [\n" + ",\n".join(t.pbtxt() for t in inputs) + "\n]",
                "output [\n" + ",\n".join(t.pbtxt() for t in outputs) + "\n]",
                f"instance_group [ {{ kind: KIND_CPU count: {settings.tta_instances} }} ]",
                _parameters(
                    {
                        "segmentation_model": segmentation_model,
                        "max_image_side": settings.max_image_side,
                        "tile": settings.tile,
                        "overlap": settings.overlap,
                        "batch_size": settings.batch_for("segmentation"),
                        "multiple": int(multiple),
                    }
                ),
            ]
        )
        + "\n"
    )


def parse_config(text: str):
    """Parse ``config.pbtxt`` text into Triton's ``ModelConfig`` protobuf (raises on errors)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(text, model_config_pb2.ModelConfig())


def served_versions(model_dir: Path) -> list[int]:
    """The versions a model folder's config serves (specific policy) or all version folders."""
    config = parse_config((model_dir / "config.pbtxt").read_text())
    if config.version_policy.WhichOneof("policy_choice") == "specific":
        return sorted(int(v) for v in config.version_policy.specific.versions)
    return sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())


def set_served_version(model_dir: Path, version: int) -> str:
    """Point a model's config at one version (atomic rewrite); returns the previous text."""
    from google.protobuf import text_format

    path = model_dir / "config.pbtxt"
    previous = path.read_text()
    config = parse_config(previous)
    config.version_policy.Clear()
    config.version_policy.specific.versions.append(int(version))
    write_text_atomic(path, text_format.MessageToString(config))
    return previous


def config_target(model_dir: Path) -> str:
    """The target (``cpu``/``gpu``) of an existing model folder, from its config."""
    config = parse_config((model_dir / "config.pbtxt").read_text())
    return "gpu" if config.backend == "onnxruntime" else "cpu"


def add_onnx_version(
    repository: str | Path,
    name: str,
    onnx_path: str | Path,
    version: int,
    settings: ServingSettings | None = None,
) -> Path:
    """Add (or replace) version ``version`` of an ONNX model and make it the served version.

    Writes the config when the model is new, else points it at ``version`` (the old version
    folders stay, so a failed load or a rollback can return to them). The version folder is
    assembled beside the model folder and renamed into place: a live server never sees a
    half-written version.

    Returns:
        The version folder.

    Raises:
        ValueError: The ONNX graph is not a morphoflow model, a bad version, or its inputs
            differ from the existing config's (a new version must be a drop-in).
    """
    if int(version) < 1:
        raise ValueError(f"version must be >= 1, got {version}")
    info = inspect_onnx(onnx_path)
    model_dir = Path(repository) / name
    config_path = model_dir / "config.pbtxt"
    if config_path.exists():
        target = config_target(model_dir)
        existing = parse_config(config_path.read_text())
        expected = {(i.name, tuple(i.dims)) for i in existing.input}
        got = {(t.name, t.dims) for t in info.inputs}
        if expected != got:
            raise ValueError(
                f"{onnx_path}: inputs {sorted(got)} differ from {config_path}'s {sorted(expected)}"
            )
        settings = settings or ServingSettings(target=target)
    else:
        settings = settings or ServingSettings()
    model_dir.mkdir(parents=True, exist_ok=True)
    final = model_dir / str(int(version))
    with atomic_dir(final) as staging:
        shutil.copyfile(onnx_path, staging / "model.onnx")
        if settings.target == "cpu":
            shutil.copyfile(_TEMPLATES / "onnx_runtime.py", staging / "model.py")
    if config_path.exists():
        set_served_version(model_dir, int(version))
    else:
        write_text_atomic(config_path, onnx_model_config(name, info, settings, int(version)))
    return final


def add_tta_model(
    repository: str | Path,
    settings: ServingSettings | None = None,
    segmentation_model: str = SEGMENTATION_MODEL,
    multiple: int = 16,
) -> Path:
    """Write the ``nuclei_tta`` BLS model (version 1) into the repository.

    ``multiple``: spatial sizes the segmentation model accepts are multiples of it (the U-Net's
    ONNX metadata ``multiple``).
    """
    settings = settings or ServingSettings()
    model_dir = Path(repository) / TTA_MODEL
    write_text_atomic(
        model_dir / "config.pbtxt", tta_model_config(settings, segmentation_model, multiple)
    )
    write_text_atomic(model_dir / "1" / "model.py", (_TEMPLATES / "nuclei_tta.py").read_text())
    return model_dir


@dataclass(frozen=True)
class RegistryModel:
    """A registered model version resolved to a local ONNX file."""

    name: str
    version: int
    onnx_path: Path


def registry_onnx(name: str, alias: str | None = "champion", version: int | None = None):
    """Resolve ``models:/NAME@ALIAS`` (or a version) to its version number and ONNX file.

    Raises:
        ValueError: The model, alias or version does not exist, or holds no ONNX file.
    """
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        if version is None:
            version = int(client.get_model_version_by_alias(name, alias).version)
        else:
            client.get_model_version(name, str(version))
    except mlflow.exceptions.MlflowException as exc:
        where = f"version {version}" if alias is None or version else f"alias {alias!r}"
        raise ValueError(
            f"registered model {name!r} has no {where} in {mlflow.get_tracking_uri()}"
        ) from exc
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}"))
    files = [local] if local.is_file() else sorted(local.rglob("*.onnx"))
    if not files:
        raise ValueError(f"models:/{name}/{version} holds no .onnx file")
    return RegistryModel(name, int(version), files[0])


def build_repository(
    out: str | Path,
    segmentation: RegistryModel | None = None,
    featurizer: RegistryModel | None = None,
    settings: ServingSettings | None = None,
) -> dict[str, int]:
    """Write a complete repository for the given models (at least one).

    The repository is built in a temporary sibling folder and renamed over ``out``: a failed
    build leaves ``out`` as it was.

    Returns:
        ``{triton model name: version}``.
    """
    if segmentation is None and featurizer is None:
        raise ValueError("build_repository needs a segmentation model, a featuriser, or both")
    settings = settings or ServingSettings()
    served: dict[str, int] = {}
    with atomic_dir(out) as staging:
        multiple = 16
        for model, triton_name, kind in (
            (segmentation, SEGMENTATION_MODEL, "segmentation"),
            (featurizer, FEATURIZER_MODEL, "featurizer"),
        ):
            if model is None:
                continue
            info = inspect_onnx(model.onnx_path)
            if info.kind != kind:
                raise ValueError(f"{model.name} v{model.version} is a {info.kind}, not a {kind}")
            if kind == "segmentation":
                multiple = int(info.metadata.get("multiple", multiple))
            add_onnx_version(staging, triton_name, model.onnx_path, model.version, settings)
            served[triton_name] = model.version
        if segmentation is not None:
            add_tta_model(staging, settings, multiple=multiple)
            served[TTA_MODEL] = 1
    return served
