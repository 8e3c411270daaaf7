"""``morphoflow triton …``: build a model repository from the registry, serve it, deploy to it."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

triton_app = typer.Typer(
    help="Serve registered models with Triton Inference Server.", no_args_is_help=True
)

_NONE = ("", "none")


def _fail(message: str) -> None:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code=1)


@triton_app.command("build-repo")
def build_repo(
    out: Annotated[Path, typer.Option("--out", help="Model repository folder (replaced).")],
    alias: Annotated[str, typer.Option(help="Registry alias to serve.")] = "champion",
    target: Annotated[
        str, typer.Option(help="cpu (python backend + onnxruntime) or gpu (onnxruntime, GPU).")
    ] = "cpu",
    segmentation_model: Annotated[
        str, typer.Option(help="Registered U-Net served as nuclei_unet + nuclei_tta; 'none'.")
    ] = "nuclei-unet",
    featurizer_model: Annotated[
        str, typer.Option(help="Registered featuriser served as featurizer; 'none'.")
    ] = "cellpainting-cnn",
    tensorrt: Annotated[
        bool, typer.Option(help="gpu target: TensorRT FP16 execution accelerator.")
    ] = False,
    max_batch_size: Annotated[
        int, typer.Option(help="0 = 16 for segmentation, 256 for the featuriser.")
    ] = 0,
    instances: Annotated[int, typer.Option(help="Instances per ONNX model.")] = 1,
) -> None:
    """Write a Triton model repository from registry versions (``<model>/<version>/model.onnx``)."""
    from morphoflow.serving.repository import ServingSettings, build_repository, registry_onnx

    try:
        settings = ServingSettings(
            target=target, tensorrt=tensorrt, max_batch_size=max_batch_size, instances=instances
        )
        models = {}
        for option, name in (
            ("--segmentation-model", segmentation_model),
            ("--featurizer-model", featurizer_model),
        ):
            try:
                models[option] = None if name in _NONE else registry_onnx(name, alias)
            except ValueError as exc:
                raise ValueError(f"{exc} (serve without it: {option} none)") from exc
        served = build_repository(
            out, models["--segmentation-model"], models["--featurizer-model"], settings
        )
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps({"repository": str(out), "target": target, "models": served}, indent=2))


@triton_app.command("serve")
def serve(
    repo: Annotated[Path, typer.Option("--repo", help="Model repository folder.")],
    http_port: Annotated[int, typer.Option(help="HTTP port on 127.0.0.1.")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="gRPC port on 127.0.0.1.")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Metrics port on 127.0.0.1.")] = 8002,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="Model to load at start (repeat); default: all."),
    ] = None,
    log: Annotated[Path | None, typer.Option(help="Server log file.")] = None,
) -> None:
    """Run tritonserver on the repository until SIGTERM or Ctrl-C, then stop it cleanly."""
    from morphoflow.serving.server import TritonServer, TritonServerError

    models = list(model or sorted(p.parent.name for p in repo.glob("*/config.pbtxt")))
    if not models:
        _fail(f"{repo} holds no model (no <model>/config.pbtxt)")
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    server = None
    try:
        server = TritonServer(
            repo, models, http_port, grpc_port, metrics_port, log_path=log
        ).start()
        typer.echo(
            json.dumps(
                {
                    "http": server.http_url,
                    "grpc": server.grpc_url,
                    "metrics": server.metrics_url,
                    "models": models,
                    "log": str(server.log_path),
                }
            ),
        )
        while not stop.wait(0.5):
            if server.process is None or server.process.poll() is not None:
                code = server.process.returncode if server.process else None
                _fail(f"tritonserver exited with code {code}:\n{server.log_tail()}")
        code = server.stop()
        typer.echo(json.dumps({"stopped": True, "exit_code": code}))
    except TritonServerError as exc:
        _fail(str(exc))
    finally:
        if server is not None:
            server.cleanup()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@triton_app.command("deploy")
def deploy(
    model: Annotated[str, typer.Argument(help="Registered model name, e.g. nuclei-unet.")],
    repo: Annotated[Path, typer.Option("--repo", help="The live model repository.")],
    url: Annotated[str, typer.Option(help="The server (host:port gRPC, or http://…).")] = (
        "127.0.0.1:8001"
    ),
    alias: Annotated[str, typer.Option(help="Registry alias to deploy.")] = "champion",
    version: Annotated[int | None, typer.Option(help="A version instead of the alias.")] = None,
    served_as: Annotated[
        str | None,
        typer.Option("--as", help="Triton model name (default: nuclei_unet or featurizer)."),
    ] = None,
) -> None:
    """Put a registry version into the live repository and hot-load it.

    When the new version fails to load, Triton keeps serving the old one, the new version
    folder is removed again, and the command exits with status 1.
    """
    from morphoflow.serving.client import TritonClient
    from morphoflow.serving.deploy import DeploymentFailed, deploy_version
    from morphoflow.serving.repository import (
        FEATURIZER_MODEL,
        SEGMENTATION_MODEL,
        inspect_onnx,
        registry_onnx,
    )

    try:
        resolved = registry_onnx(model, None if version else alias, version)
        kind = inspect_onnx(resolved.onnx_path).kind
        name = served_as or (SEGMENTATION_MODEL if kind == "segmentation" else FEATURIZER_MODEL)
        with TritonClient(url) as client:
            done = deploy_version(client, repo, name, resolved.onnx_path, resolved.version)
    except (ValueError, FileNotFoundError, DeploymentFailed, ConnectionError) as exc:
        _fail(str(exc))
    typer.echo(
        json.dumps(
            {
                "model": model,
                "served_as": done.model,
                "version": done.version,
                "previous_versions": done.previous_versions,
                "live_versions": done.live_versions,
            },
            indent=2,
        )
    )
