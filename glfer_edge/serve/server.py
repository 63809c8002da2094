"""A ``tritonserver`` process (the binary of the ``nvidia-pytriton`` wheel) on a model repository.

::

    with TritonServer(repo, http_port=8000, grpc_port=8001, metrics_port=8002) as server:
        server.wait_ready()          # every model of the repository loaded
        ...                          # clients: server.http_url, server.grpc_url

The server is Triton itself: its HTTP/gRPC protocol (KServe v2), ``/v2/health/live``, ``/v2/health/ready``
and the Prometheus ``/metrics`` endpoint are untouched. :meth:`stop` sends SIGINT (Triton's graceful
shutdown: it finishes in-flight requests, then unloads the models) and kills the process after
``exit_timeout_s``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from glfer_edge.errors import GlferError, InputError
from glfer_edge.serve.distribution import find_distribution, prepare_backends, server_env

__all__ = ["TritonServer", "ServerStartError", "free_port", "free_ports"]


class ServerStartError(GlferError):
    """tritonserver exited or did not become ready; the message names the first error line of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now (the kernel's pick)."""
    return free_ports(1, host)[0]


def free_ports(n: int, host: str = "127.0.0.1", exclude: Sequence[int] = ()) -> list[int]:
    """``n`` distinct TCP ports free on ``host`` now, none of ``exclude``. The sockets stay bound until all are
    picked: one at a time, the kernel may hand out a port it just released twice."""
    with contextlib.ExitStack() as held:
        ports: list[int] = []
        while len(ports) < n:
            s = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind((host, 0))
            if (port := int(s.getsockname()[1])) not in exclude:
                ports.append(port)
        return ports


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host if host not in ("", "0.0.0.0") else "0.0.0.0", port))
        except OSError:
            return True
    return False


def _die_with_parent() -> None:
    """In the child: SIGKILL when the process that started Triton dies (no orphaned server on its ports)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class TritonServer:
    """One ``tritonserver`` process; ports None pick free ones."""

    def __init__(
        self, repository: str | Path, *, host: str = "127.0.0.1", http_port: int | None = None,
        grpc_port: int | None = None, metrics_port: int | None = None, log: str | Path | IO[bytes] | None = None,
        log_verbose: int = 0, exit_timeout_s: float = 10.0, extra_args: Sequence[str] = (),
    ) -> None:
        self.repository = Path(repository)
        self.host = host
        client_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        self.client_host = client_host
        given = (http_port, grpc_port, metrics_port)
        picked = iter(free_ports(given.count(None) + given.count(0), client_host, [p for p in given if p]))
        self.http_port, self.grpc_port, self.metrics_port = (p or next(picked) for p in given)
        self.exit_timeout_s = exit_timeout_s
        self._log_target = log
        self._log_verbose = log_verbose
        self._extra = list(extra_args)
        self._proc: subprocess.Popen | None = None
        self._workdir: tempfile.TemporaryDirectory | None = None
        self._log_file: IO[bytes] | None = None
        self.log_path: Path | None = None

    # -- endpoints -----------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"http://{self.client_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.client_host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.client_host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    # -- life cycle ----------------------------------------------------------------------------
    def command(self, backend_dir: Path) -> list[str]:
        dist = find_distribution()
        return [
            str(dist.binary), f"--model-repository={self.repository}", f"--backend-directory={backend_dir}",
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true", "--allow-cpu-metrics=true", "--allow-gpu-metrics=false",
            f"--exit-timeout-secs={max(1, int(self.exit_timeout_s))}", f"--log-verbose={self._log_verbose}",
            "--strict-readiness=true", *self._extra,
        ]

    def start(self) -> "TritonServer":
        if self.is_alive():
            raise RuntimeError(f"tritonserver already runs (pid {self.pid})")
        if not (self.repository / ".").is_dir():
            raise InputError(f"model repository {self.repository} not found; write one with glfer-edge export-triton")
        for name, port in (("HTTP", self.http_port), ("gRPC", self.grpc_port), ("metrics", self.metrics_port)):
            if _port_in_use(self.host or "0.0.0.0", port):
                raise InputError(f"{name} port {port} on {self.host} is in use; pick another one (or stop that server)")
        dist = find_distribution()
        env = server_env(dist)
        if self._workdir is not None:
            self._workdir.cleanup()
        self._workdir = tempfile.TemporaryDirectory(prefix="glfer_triton_")
        backend_dir = prepare_backends(dist, Path(self._workdir.name) / "backends")
        target = self._log_target
        if target is None or isinstance(target, (str, Path)):
            self.log_path = Path(target) if target is not None else Path(self._workdir.name) / "tritonserver.log"
            self._log_file = open(self.log_path, "ab")
            stdout: IO[bytes] | int = self._log_file
        else:
            stdout = target
        self._proc = subprocess.Popen(
            self.command(backend_dir), env=env, stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal reaches glfer-edge, which stops Triton in order
            preexec_fn=_die_with_parent,
        )
        return self

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1.0) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_ready(self, timeout_s: float = 60.0) -> "TritonServer":
        """Block until Triton reports ready (all models loaded); ServerStartError with its log's reason."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise ServerStartError(f"tritonserver exited with status {self._proc.returncode}: {self.failure()}")
            if self.is_ready():
                return self
            time.sleep(0.1)
        reason = self.failure()
        self.stop()
        raise ServerStartError(f"tritonserver was not ready after {timeout_s:g} s: {reason}")

    def logs(self) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return self.log_path.read_text(errors="replace")

    def failure(self) -> str:
        """The first error line of the server's log (or its last line), for one-line messages."""
        if self.log_path is None:
            return "see the tritonserver log above"
        lines = [line.strip() for line in self.logs().splitlines() if line.strip()]
        noise = ("CudaDriverHelper", "pinned memory", "GPU metrics")
        for marks in (("failed to load",), ("E",)):
            for line in lines:
                if any(line.startswith(m) or m in line for m in marks) and not any(n in line for n in noise):
                    return line[:400]
        return lines[-1][:400] if lines else f"no log (see {self.log_path})"

    def stop(self) -> int | None:
        """SIGINT (graceful), then SIGKILL after ``exit_timeout_s`` + 5 s; returns the exit status."""
        proc, self._proc = self._proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=self.exit_timeout_s + 5.0)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)  # the stubs too: they are in its session
                    proc.wait(timeout=10.0)
            code = proc.returncode
            try:  # stubs left behind by a killed server
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def kill(self) -> None:
        """SIGKILL the server and its stubs at once (fault tests: a crashed server)."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10.0)

    def cleanup(self) -> None:
        self.stop()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
