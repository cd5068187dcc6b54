"""The embedded Triton: the tritonserver binary bundled in the ``nvidia-pytriton`` wheel.

That wheel ships Triton 2.51.0 with only the Python backend. To run it outside PyTriton we
assemble a backend directory (the backend library plus the Python stub built for this
interpreter), put the wheel's private libraries on LD_LIBRARY_PATH (the stub does not find them
itself) and this environment's ``bin`` first on PATH (so the stub imports this environment's
packages, recoserve included).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from recoserve.client.sync import is_loopback
from recoserve.contract import API_KEY_HEADER
from recoserve.server.processes import ends_with_parent


class TritonError(RuntimeError):
    """Triton could not be started (the message says why and what to do)."""


# Triton serving other machines checks a header itself (its restricted-API options): the API
# key on what a client needs, a per-launch random token (never printed) on what only an
# operator on this machine should touch. Health stays open, for probes and load balancers.
CLIENT_APIS = ("inference", "metadata", "model-config", "statistics")
ADMIN_APIS = ("shared-memory", "model-repository", "trace", "logging")
ADMIN_HEADER = "x-recoserve-admin"


def restricted_api_args(api_key: str, admin_token: str) -> tuple[str, ...]:
    """tritonserver options that refuse, on gRPC and HTTP, client APIs without ``api_key`` in
    the ``x-api-key`` header and admin APIs without ``admin_token``."""
    args = []
    for apis, header, value in (
        (CLIENT_APIS, API_KEY_HEADER, api_key),
        (ADMIN_APIS, ADMIN_HEADER, admin_token),
    ):
        group = f"{','.join(apis)}:{header}={value}"
        args += [f"--grpc-restricted-protocol={group}", f"--http-restricted-api={group}"]
    return tuple(args)


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(n: int = 3) -> list[int]:
    """``n`` distinct ports that are free right now (for tests and side-by-side servers)."""
    sockets = []
    for _ in range(n):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _pytriton_dir() -> Path:
    try:
        import pytriton
    except ImportError as err:
        raise TritonError(
            "the embedded Triton needs the nvidia-pytriton wheel (pip install nvidia-pytriton)"
        ) from err
    return Path(pytriton.__file__).parent / "tritonserver"


def tritonserver_binary() -> Path:
    return _pytriton_dir() / "bin" / "tritonserver"


def backend_directory(cache: Path | None = None) -> Path:
    """A backend directory with the Python backend and the stub for this Python version."""
    base = _pytriton_dir()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = base / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise TritonError(f"the bundled Triton has no Python backend stub for Python {version}")
    root = cache or Path(sys.prefix) / "share" / "recoserve" / "triton_backends"
    target = root / "python"
    target.mkdir(parents=True, exist_ok=True)
    for source in [*sorted((base / "backends" / "python").glob("*")), stub]:
        if source.is_file() and not (target / source.name).exists():
            shutil.copy2(source, target / source.name)
    return root


def triton_environment() -> dict[str, str]:
    env = dict(os.environ)
    libs = Path(_pytriton_dir()).parent.parent / "nvidia_pytriton.libs"
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(libs), env.get("LD_LIBRARY_PATH", "")) if p
    )
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@dataclass
class TritonServer:
    """A running tritonserver process; use ``start_triton`` (a context manager) or ``launch``."""

    repository: Path
    ports: Ports = field(default_factory=Ports)
    log_path: Path | None = None
    host: str = "127.0.0.1"  # where Triton listens; 0.0.0.0 to serve other machines
    process: subprocess.Popen[bytes] | None = None
    extra_args: tuple[str, ...] = ()  # tritonserver options of every launch (and relaunch)
    # Required where ``host`` reaches other machines: clients send it as x-api-key.
    api_key: str | None = None
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    # Where the (unauthenticated, read-only) metrics listen; None: 127.0.0.1 when ``host``
    # reaches other machines, else ``host``. A container sets its network's address for
    # Prometheus.
    metrics_host: str | None = None

    @property
    def metrics_address(self) -> str:
        if self.metrics_host is not None:
            return self.metrics_host
        # Metrics stay on this machine when the rest is exposed (they carry no check).
        return "127.0.0.1" if not is_loopback(self.host) else self.host

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.metrics}/metrics"

    def launch(self, extra_args: tuple[str, ...] = (), append_log: bool = False) -> None:
        exposed = not is_loopback(self.host)
        if exposed and not self.api_key:
            raise TritonError(
                f"Triton would answer anyone who reaches {self.host} with no credential: give "
                "an API key (recoserve serve --api-key), or keep Triton on 127.0.0.1"
            )
        restricted = restricted_api_args(self.api_key, self.admin_token) if self.api_key else ()
        extra_args = (*self.extra_args, *restricted, *extra_args)
        if not (self.repository / "hgcal_clustering" / "config.pbtxt").exists():
            raise TritonError(
                f"no model repository at {self.repository}; write one with "
                "`recoserve export repository`"
            )
        for label, port in (
            ("HTTP", self.ports.http),
            ("gRPC", self.ports.grpc),
            ("metrics", self.ports.metrics),
        ):
            if not port_is_free(port):
                raise TritonError(
                    f"the {label} port {port} is taken (another Triton?); choose another with "
                    f"--{label.lower()}-port"
                )
        command = [
            str(tritonserver_binary()),
            f"--model-repository={self.repository.resolve()}",
            f"--backend-directory={backend_directory()}",
            f"--http-port={self.ports.http}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}",
            "--allow-metrics=true",
            "--strict-readiness=true",
            "--exit-on-error=true",
            "--log-verbose=0",
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--metrics-address={self.metrics_address}",
            *extra_args,
        ]
        log = self.log_path or self.repository.parent / "triton.log"
        self.log_path = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab" if append_log else "wb") as sink:
            # Its own process group: the Python-backend stubs it forks join it, so ``stop`` can
            # end them too (they ignore SIGTERM and outlive a crashed Triton otherwise).
            self.process = subprocess.Popen(
                command,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=triton_environment(),
                start_new_session=True,
                preexec_fn=ends_with_parent(),
            )

    def is_ready(self) -> bool:
        try:
            url = f"http://{self.http_url}/v2/health/ready"
            with urllib.request.urlopen(url, timeout=1.0) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Block until every model is READY; raises TritonError with the log tail if Triton
        exits (e.g. a model failed to load) or the timeout passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise TritonError(
                    f"tritonserver exited with code {self.process.returncode}; "
                    f"end of its log ({self.log_path}):\n{self.log_tail()}"
                )
            if self.is_ready():
                return
            time.sleep(0.25)
        raise TritonError(f"Triton not ready after {timeout:.0f} s; log:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (SIGINT, then SIGKILL after ``timeout``); then whatever is left of
        Triton's process group (stubs of a crashed or stopped server) is killed."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


@contextlib.contextmanager
def start_triton(
    repository: Path,
    ports: Ports | None = None,
    log_path: Path | None = None,
    timeout: float = 180.0,
    extra_args: tuple[str, ...] = (),
    host: str = "127.0.0.1",
    api_key: str | None = None,
) -> Iterator[TritonServer]:
    """Start Triton on ``repository``, wait until ready, stop it on exit. A Triton killed by a
    signal while starting (seen: gRPC's event engine aborting on a closed descriptor) is
    launched once more; one that exits with an error (a model that fails to load) is not."""
    server = TritonServer(
        repository, ports or Ports(*free_ports(3)), log_path, host=host, api_key=api_key
    )
    server.launch(extra_args)
    try:
        try:
            server.wait_ready(timeout)
        except TritonError:
            if server.process is None or (server.process.returncode or 0) >= 0:
                raise
            server.stop()  # what is left of its process group
            server.launch(extra_args, append_log=True)
            server.wait_ready(timeout)
        yield server
    finally:
        server.stop()


class Watchdog(threading.Thread):
    """Restarts a crashed Triton: polls the process every ``poll`` seconds; when it has exited,
    ends what is left of its process group (the stubs), relaunches it on the same ports and
    waits until it is ready, with backoff (1, 2, 4 ... s) and at most ``max_restarts`` restarts
    in a row that fail or crash within a minute. Each step is logged through ``log``; when it
    gives up, ``gave_up`` holds why and ``on_give_up`` is called."""

    def __init__(
        self,
        server: TritonServer,
        log: Callable[[str], object],
        on_give_up: Callable[[], object],
        max_restarts: int = 5,
        poll: float = 0.5,
        ready_timeout: float = 300.0,
    ) -> None:
        super().__init__(name="triton-watchdog", daemon=True)
        self.server = server
        self.log = log
        self.on_give_up = on_give_up
        self.max_restarts = max_restarts
        self.poll = poll
        self.ready_timeout = ready_timeout
        self.restarts = 0
        self.gave_up: str | None = None
        self._stop_event = threading.Event()
        self._lock = threading.Lock()  # a relaunch and a shutdown never interleave

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop watching and stop the server (no restart can start after this)."""
        with self._lock:
            self._stop_event.set()
            self.server.stop(timeout)
        if self.is_alive() and threading.current_thread() is not self:
            self.join(10.0)

    def run(self) -> None:
        failures = 0
        healthy_since = time.monotonic()
        while not self._stop_event.wait(self.poll):
            process = self.server.process
            if process is None or process.poll() is None:
                continue
            if time.monotonic() - healthy_since > 60.0:
                failures = 0  # it ran a while: a new crash starts a new count
            failures += 1
            if failures > self.max_restarts:
                self.gave_up = (
                    f"Triton crashed {failures} times in a row (last exit code "
                    f"{process.returncode}); giving up. End of its log ({self.server.log_path}):"
                    f"\n{self.server.log_tail()}"
                )
                self.log(self.gave_up)
                self.on_give_up()
                return
            delay = 2.0 ** (failures - 1)
            self.log(
                f"Triton exited with code {process.returncode}; restarting in {delay:.0f} s "
                f"(attempt {failures} of {self.max_restarts})"
            )
            self.server.stop()  # ends the crashed server's stubs too
            if self._stop_event.wait(delay):
                return
            try:
                with self._lock:
                    if self._stop_event.is_set():
                        return
                    self.server.launch(append_log=True)
                self.server.wait_ready(self.ready_timeout)
            except TritonError as err:
                if self._stop_event.is_set():
                    return
                self.log(f"restart {failures} failed: {str(err).splitlines()[0]}")
                continue
            self.restarts += 1
            healthy_since = time.monotonic()
            self.log(f"Triton is ready again (restart {self.restarts})")


PUBLIC_MODELS = ("hgcal_clustering", "event_reco")


def public_models_only() -> tuple[str, ...]:
    """tritonserver options that load only the public models: in the local flavour they run
    both networks inline, so the building blocks (gravnet_oc, condensation, mlpf, mlpf_decode)
    would be Python-backend stubs that nothing calls."""
    return ("--model-control-mode=explicit", *(f"--load-model={m}" for m in PUBLIC_MODELS))
