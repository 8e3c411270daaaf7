"""A real Triton Inference Server process, from the ``nvidia-pytriton`` wheel's binary.

The wheel ships ``tritonserver`` (python backend only) and a python backend stub per Python
version. :class:`TritonServer` lays out a backend folder with the stub of the running
interpreter, sets ``LD_LIBRARY_PATH`` (the wheel's libraries and this interpreter's libpython)
and ``PATH`` (this environment's ``bin`` first, so the stub imports this environment's packages),
binds every endpoint to 127.0.0.1, uses explicit model control, waits for readiness, and stops
the process with SIGTERM (SIGKILL after a grace period).

In production the same model repository is served by NVIDIA's Triton image on a GPU (see
``deployment/``); this module is what runs on a CPU machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PYTHON_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")
STUB = "triton_python_backend_stub"


class TritonServerError(RuntimeError):
    """The server could not be found, started, or did not become ready."""


@dataclass(frozen=True)
class TritonInstall:
    """Where the pieces of the wheel's Triton live."""

    binary: Path
    python_backend: Path
    stub: Path
    libraries: Path


def find_triton() -> TritonInstall:
    """Locate ``tritonserver`` and the python backend inside the installed nvidia-pytriton.

    Raises:
        TritonServerError: nvidia-pytriton is not installed or lacks a piece (names it).
    """
    try:
        import pytriton
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise TritonServerError("nvidia-pytriton is not installed (pip install -e .)") from exc
    root = Path(pytriton.__file__).parent / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    install = TritonInstall(
        binary=root / "bin" / "tritonserver",
        python_backend=root / "backends" / "python",
        stub=root / "python_backend_stubs" / version / STUB,
        libraries=Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs",
    )
    for path in (install.binary, install.stub, install.libraries, install.python_backend):
        if not path.exists():
            raise TritonServerError(f"nvidia-pytriton lacks {path} (Python {version})")
    return install


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_backends(directory: Path, install: TritonInstall) -> Path:
    """Write a backend directory holding ``python/`` (library, utils, this Python's stub)."""
    python = directory / "python"
    python.mkdir(parents=True, exist_ok=True)
    for name in PYTHON_BACKEND_FILES:
        target = python / name
        if not target.exists():
            target.symlink_to(install.python_backend / name)
    stub = python / STUB
    if not stub.exists():
        stub.symlink_to(install.stub)
    return directory


def server_environment(install: TritonInstall) -> dict[str, str]:
    """Environment of the server process (libraries, this environment's Python first)."""
    env = dict(os.environ)
    libpython = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(install.libraries), libpython, env.get("LD_LIBRARY_PATH", "")) if p
    )
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # the stub runs model.py files that import morphoflow: make sure it is importable
    import morphoflow

    package_root = str(Path(morphoflow.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


class TritonServer:
    """A tritonserver process on 127.0.0.1 with explicit model control.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Ports default to free
    ones.

    Args:
        repository: Model repository folder.
        models: Models loaded at start (``--load-model``); others are loaded by clients.
        http_port, grpc_port, metrics_port: Ports (None = a free port).
        log_path: Server log file (default: ``<repository>/../tritonserver.log`` under a temp
            folder owned by this object).
        startup_timeout_s: Seconds to wait for readiness.
        extra_args: More ``tritonserver`` arguments.
    """

    def __init__(
        self,
        repository: str | Path,
        models: Sequence[str] = (),
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        log_path: str | Path | None = None,
        startup_timeout_s: float = 120.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.repository = Path(repository).resolve()
        if not self.repository.is_dir():
            raise TritonServerError(f"model repository not found: {self.repository}")
        self.models = list(models)
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.startup_timeout_s = float(startup_timeout_s)
        self.extra_args = list(extra_args)
        self._workdir = Path(tempfile.mkdtemp(prefix="morphoflow-triton-"))
        self.log_path = Path(log_path) if log_path else self._workdir / "tritonserver.log"
        self.process: subprocess.Popen[bytes] | None = None
        # Triton 2.51's python backend can leave its shared-memory regions in /dev/shm after a
        # clean exit: a prefix of our own lets stop() remove exactly this server's regions
        self.shm_prefix = f"morphoflow_triton_{os.getpid()}_{self._workdir.name[-8:]}_"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def command(self, install: TritonInstall, backends: Path) -> list[str]:
        """The ``tritonserver`` command line."""
        cmd = [
            str(install.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            "--model-control-mode=explicit",
            "--http-address=127.0.0.1",
            "--grpc-address=127.0.0.1",
            "--metrics-address=127.0.0.1",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            "--exit-timeout-secs=10",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            "--log-verbose=0",
        ]
        cmd += [f"--load-model={name}" for name in self.models]
        return cmd + self.extra_args

    def start(self) -> TritonServer:
        """Start the process and wait until the server and the start-up models are ready.

        Raises:
            TritonServerError: The process exited or did not become ready in time (with the
                tail of its log).
        """
        if self.process is not None:
            raise TritonServerError("server already started")
        install = find_triton()
        backends = prepare_backends(self._workdir / "backends", install)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process lifetime
        try:
            self.process = subprocess.Popen(
                self.command(install, backends),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=server_environment(install),
                start_new_session=True,  # Ctrl-C in a terminal reaches us, we stop it cleanly
            )
        finally:
            log.close()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=2) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (urllib.error.URLError, OSError):
            return 0

    def ready(self) -> bool:
        """Whether the server answers ``/v2/health/ready`` with 200."""
        return self._get("/v2/health/ready") == 200

    def model_ready(self, name: str) -> bool:
        """Whether a model is loaded and ready."""
        return self._get(f"/v2/models/{name}/ready") == 200

    def wait_ready(self) -> None:
        """Block until ready (server and start-up models).

        Raises:
            TritonServerError: The process died or the timeout passed.
        """
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise TritonServerError(
                    f"tritonserver exited with code {self.process.returncode if self.process else None}"
                    f"; log {self.log_path}:\n{self.log_tail()}"
                )
            if self.ready() and all(self.model_ready(m) for m in self.models):
                return
            time.sleep(0.2)
        raise TritonServerError(
            f"tritonserver not ready after {self.startup_timeout_s:.0f} s; log {self.log_path}:\n"
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, wait (models unload, shared memory is released), then SIGKILL if needed.

        Returns:
            The exit code (None if it was never started).
        """
        process, self.process = self.process, None
        code = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            code = process.returncode
            self.remove_shared_memory()
        return code

    def shared_memory_files(self) -> list[Path]:
        """This server's python-backend shared-memory regions in /dev/shm."""
        return sorted(Path("/dev/shm").glob(f"{self.shm_prefix}*"))

    def remove_shared_memory(self) -> None:
        """Remove this server's regions (only call once the process has exited)."""
        for path in self.shared_memory_files():
            path.unlink(missing_ok=True)

    def cleanup(self) -> None:
        """Stop and remove the temporary folder (backends; the log unless placed elsewhere)."""
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
