"""Load test of the served models: N concurrent clients for T seconds per scenario.

Scenarios: ``nuclei_tta`` with 8 views, ``nuclei_tta`` with 1 view (the same model without
TTA: their latency ratio is the cost of TTA when served), and ``featurizer`` (batches of
crops). Without ``--url`` a tritonserver is started on free loopback ports, serving a
repository built from the shipped U-Net (exported to ONNX here, with its parity check) and a
featuriser (``--featurizer`` ONNX file, else a randomly initialised B0 with calibrated
batch-norm: weights do not change the timing).

Prints one JSON object: per scenario requests, errors, throughput, p50/p90/p99 latency.

    python benchmarks/triton_load.py --clients 8 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from morphoflow.serving.client import TritonClient


def _featurizer_onnx(path: Path) -> Path:
    import torch

    from morphoflow.learning.model import (
        build_efficientnet_b0,
        export_featurizer_onnx,
        parity_inputs,
    )

    torch.manual_seed(0)
    model = build_efficientnet_b0(n_classes=4)
    model.train()
    with torch.no_grad():
        for i in range(2):
            model(torch.from_numpy(parity_inputs(n=8, seed=10 + i)))
    export_featurizer_onnx(model.eval(), path)
    return path


def _repository(folder: Path, featurizer: Path | None, instances: int, tta_instances: int) -> Path:
    from morphoflow.lifecycle.export import export_unet_onnx
    from morphoflow.serving.repository import RegistryModel, ServingSettings, build_repository

    export_unet_onnx(None, folder / "unet.onnx")
    featurizer = featurizer or _featurizer_onnx(folder / "featurizer.onnx")
    repo = folder / "repository"
    build_repository(
        repo,
        RegistryModel("nuclei-unet", 1, folder / "unet.onnx"),
        RegistryModel("cellpainting-cnn", 1, featurizer),
        ServingSettings(instances=instances, tta_instances=tta_instances),
    )
    return repo


def _scenario(
    url: str, protocol: str, clients: int, seconds: float, call_factory
) -> dict[str, float | int]:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    messages: list[str] = []
    start_gate = threading.Barrier(clients + 1)

    def worker(index: int) -> None:
        client = TritonClient(url, protocol=protocol, timeout_s=300, retries=0)
        call = call_factory(client)
        start_gate.wait()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                call()
            except Exception as exc:  # counted and reported, the load goes on
                errors[index] += 1
                if len(messages) < 5:
                    messages.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            latencies[index].append(time.perf_counter() - t0)
        client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    values = np.array([v for per in latencies for v in per]) * 1000.0
    result: dict[str, float | int] = {
        "requests": int(values.size),
        "errors": int(sum(errors)),
        "wall_s": round(wall, 2),
        "throughput_rps": round(values.size / wall, 3),
    }
    if values.size:
        for q in (50, 90, 99):
            result[f"p{q}_ms"] = round(float(np.percentile(values, q)), 1)
        result["mean_ms"] = round(float(values.mean()), 1)
    if messages:
        result["error_examples"] = messages  # type: ignore[assignment]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an existing server (host:port); default: start one")
    parser.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--image-size", type=int, default=256, help="nuclei_tta image side")
    parser.add_argument("--crops", type=int, default=32, help="crops per featurizer request")
    parser.add_argument("--featurizer", type=Path, help="featuriser ONNX file to serve")
    parser.add_argument("--instances", type=int, default=1, help="instances per ONNX model")
    parser.add_argument("--tta-instances", type=int, default=2)
    parser.add_argument(
        "--scenarios", default="tta8,tta1,featurizer", help="comma list of tta8,tta1,featurizer"
    )
    args = parser.parse_args()

    from morphoflow.backbone import scale_crops
    from morphoflow.simulate.nuclei import random_nuclei_image

    image, _ = random_nuclei_image(np.random.default_rng(0), (args.image_size, args.image_size))
    image = image.astype(np.float32)
    rng = np.random.default_rng(1)
    crops = scale_crops(rng.gamma(2.0, 300.0, (args.crops, 5, 128, 128)).astype(np.float32))
    factories = {
        "tta8": lambda c: lambda: c.segment(image, views=8),
        "tta1": lambda c: lambda: c.segment(image, views=1),
        "featurizer": lambda c: lambda: c.featurize(crops, batch_size=args.crops),
    }
    names = [s for s in args.scenarios.split(",") if s]
    unknown = set(names) - set(factories)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}")

    report: dict[str, object] = {
        "benchmark": "triton_load",
        "clients": args.clients,
        "seconds_per_scenario": args.seconds,
        "protocol": args.protocol,
        "image_size": args.image_size,
        "crops_per_request": args.crops,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    with tempfile.TemporaryDirectory(prefix="triton-load-") as tmp:
        server = None
        url = args.url
        if url is None:
            from morphoflow.serving.server import TritonServer

            repo = _repository(Path(tmp), args.featurizer, args.instances, args.tta_instances)
            server = TritonServer(repo, models=["nuclei_unet", "nuclei_tta", "featurizer"])
            server.start()
            url = server.grpc_url if args.protocol == "grpc" else server.http_url
            report["server"] = {
                "tritonserver": "nvidia-pytriton wheel, python backend + onnxruntime (cpu)",
                "instances": args.instances,
                "tta_instances": args.tta_instances,
            }
        try:
            # warm-up: first requests load sessions and allocate buffers
            with TritonClient(url, protocol=args.protocol) as warm:
                for name in names:
                    factories[name](warm)()
            scenarios = {}
            for name in names:
                scenarios[name] = _scenario(
                    url, args.protocol, args.clients, args.seconds, factories[name]
                )
            report["scenarios"] = scenarios
            if "tta8" in scenarios and "tta1" in scenarios:
                p50 = [scenarios[k].get("p50_ms") for k in ("tta8", "tta1")]
                if all(p50):
                    report["tta8_vs_tta1_p50_latency_ratio"] = round(p50[0] / p50[1], 2)
                report["tta8_vs_tta1_throughput_ratio"] = round(
                    scenarios["tta1"]["throughput_rps"]
                    / max(scenarios["tta8"]["throughput_rps"], 1e-9),
                    2,
                )
            if "featurizer" in scenarios:
                report["featurizer_crops_per_s"] = round(
                    scenarios["featurizer"]["throughput_rps"] * args.crops, 1
                )
        finally:
            if server is not None:
                server.cleanup()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    from morphoflow.runtime import configure_process

    configure_process()
    main()
