"""deployment/: what can be checked without Docker or a GPU.

The compose file parses and its paths, ports and Triton flags line up with the runbook and with
what ``morphoflow triton build-repo`` writes; every command the runbook tells an operator to
type exists with the options it uses.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

DEPLOYMENT = PROJECT_ROOT / "deployment"
RUNBOOK = (DEPLOYMENT / "RUNBOOK.md").read_text()


def _compose() -> dict:
    return yaml.safe_load((DEPLOYMENT / "docker-compose.yml").read_text())


def _runbook_commands(program: str) -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", RUNBOOK, flags=re.S)
    commands = []
    for block in blocks:
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(program + " "):
                commands.append(shlex.split(line))
    return commands


def test_compose_services_and_triton_flags() -> None:
    services = _compose()["services"]
    assert {"postgres", "minio", "mlflow", "triton"} <= set(services)
    triton = services["triton"]
    command = " ".join(triton["command"].split())
    assert "--model-repository=/models" in command
    assert "--model-control-mode=explicit" in command  # deploy hot-loads through the API
    assert triton["volumes"] == ["./model_repository:/models:ro"]
    assert {p.split(":")[0] for p in triton["ports"]} == {"8000", "8001", "8002"}
    gpu = triton["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    context = (DEPLOYMENT / triton["build"]["context"]).resolve()
    assert context == PROJECT_ROOT
    assert (context / triton["build"]["dockerfile"]).is_file()
    assert (DEPLOYMENT / services["mlflow"]["build"] / "Dockerfile").is_file()
    mlflow = " ".join(services["mlflow"]["command"].split())
    assert "--backend-store-uri postgresql://" in mlflow
    assert "--artifacts-destination s3://" in mlflow


def test_triton_image_installs_what_nuclei_tta_imports() -> None:
    dockerfile = (DEPLOYMENT / "triton" / "Dockerfile").read_text()
    for path in re.findall(r"^COPY (\S+)", dockerfile, flags=re.M):
        assert (PROJECT_ROOT / path).exists(), f"Dockerfile copies missing {path}"
    stub = re.search(r"python_backend_stubs/(\d+\.\d+)/", dockerfile)
    assert stub and stub.group(1) == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert "python3.11" in dockerfile


def test_runbook_repository_path_is_the_mounted_one() -> None:
    (build,) = [c for c in _runbook_commands("morphoflow") if c[1:3] == ["triton", "build-repo"]]
    out = Path(build[build.index("--out") + 1])
    assert out == Path("deployment") / "model_repository"
    for deploy in [c for c in _runbook_commands("morphoflow") if c[1:3] == ["triton", "deploy"]]:
        assert Path(deploy[deploy.index("--repo") + 1]) == out
    assert "--target" in build and build[build.index("--target") + 1] == "gpu"


@pytest.mark.parametrize("command", _runbook_commands("morphoflow"), ids=lambda c: " ".join(c[1:3]))
def test_runbook_morphoflow_commands_exist(command: list[str]) -> None:
    exe = str(Path(sys.executable).with_name("morphoflow"))
    # options are checked by the parser before --help is handled
    result = subprocess.run(
        [exe, *command[1:], "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"{' '.join(command)}: {result.stderr}"


def test_runbook_kedro_pipelines_exist() -> None:
    # find_pipelines registers every folder of morphoflow.pipelines that has a pipeline.py
    folder = PROJECT_ROOT / "src" / "morphoflow" / "pipelines"
    names = {p.parent.name for p in folder.glob("*/pipeline.py")}
    for command in _runbook_commands("kedro"):
        (flag,) = [a for a in command if a.startswith("--pipelines=")]
        assert flag.split("=", 1)[1] in names, command


def test_compose_dask_cluster_lines_up_with_the_runbook() -> None:
    """The Dask scheduler and workers of the compose stack: ports, image, shared data."""
    services = _compose()["services"]
    scheduler, worker = services["dask-scheduler"], services["dask-worker"]
    assert (DEPLOYMENT / scheduler["build"]["context"] / scheduler["build"]["dockerfile"]).is_file()
    assert worker["image"] == scheduler["image"]  # one image: same morphoflow everywhere
    assert {p.split(":")[0] for p in scheduler["ports"]} == {"8786", "8787"}
    assert "tcp://dask-scheduler:8786" in worker["command"]
    assert worker["working_dir"] == "/project" and "..:/project" in worker["volumes"]
    driver = services["profiling-driver"]
    assert driver["volumes"] == worker["volumes"] and driver["working_dir"] == "/project"
    assert "triton" in worker["depends_on"]
    section = RUNBOOK.split("## 8. Scale out profiling on Dask")[1].split("\n## ")[0]
    assert "execution.address=tcp://dask-scheduler:8786" in section
    for name in ("slurm.yaml", "hpc_cluster.py", "kubernetes.yaml", "Dockerfile"):
        assert (DEPLOYMENT / "dask" / name).is_file() and f"deployment/dask/{name}" in (
            section + (DEPLOYMENT / "dask" / "kubernetes.yaml").read_text()
        ), name
    manifest = yaml.safe_load((DEPLOYMENT / "dask" / "kubernetes.yaml").read_text())
    assert manifest["kind"] == "DaskCluster"
    assert manifest["spec"]["scheduler"]["service"]["ports"][0]["port"] == 8786
