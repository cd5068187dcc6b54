"""`RecoClient`: what a reconstruction job uses to send events to recoserve's Triton over gRPC.

- ``cluster(event)`` / ``reconstruct(event)``: one event, typed result.
- ``reconstruct_many(events)``: gRPC streaming with a bounded number of requests in flight;
  yields ``Outcome(index, result, error)`` as results arrive, each matched to its event by
  request id. If a server fails mid-stream, the unanswered events are sent again to the next
  healthy server; an event is yielded exactly once.
- Several servers: the first healthy one (server and model ready) in the given order is used; a
  server that fails with a transient error is skipped for ``cooldown`` seconds (failover).
- Retries with exponential backoff on transient errors only (UNAVAILABLE, RESOURCE_EXHAUSTED,
  DEADLINE_EXCEEDED, ABORTED); a bad input is never retried.
- System shared memory for the tensors when the server is on this host (a loopback address and
  a region that registers); otherwise, or if registering fails (remote server, load balancer),
  plain gRPC. ``shared_memory="never"|"auto"|"always"``.
- Optional gRPC compression ("gzip", "deflate") and TLS (``ssl=True`` plus PEM files).
- ``check_model()``: the served model's checkpoint hashes against the expected ones.
- Inputs are validated before sending (shape, dtype, finite values), with the messages the
  server would give.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.utils import InferenceServerException

from recoserve.client.policy import ServerState, in_order_of_preference
from recoserve.client.results import ClusterResult, RecoResult, decode_result
from recoserve.contract import (
    CANDIDATE_COLUMNS,
    CLUSTER_COLUMNS,
    GRPC_API_KEY_METADATA,
    InvalidInput,
    check_hits,
    check_tracks,
    output_names,
)
from recoserve.events.model import Event

_log = logging.getLogger("recoserve.client")

TRANSIENT = frozenset(
    {
        "StatusCode.UNAVAILABLE",
        "StatusCode.RESOURCE_EXHAUSTED",
        "StatusCode.DEADLINE_EXCEEDED",
        "StatusCode.ABORTED",
    }
)
CLUSTER_OUTPUTS = output_names("hgcal_clustering")
RECO_OUTPUTS = output_names("event_reco")
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine (shared memory works; nothing else can reach it)."""
    return host in LOOPBACK or host.startswith("127.")


class RecoError(RuntimeError):
    """A request that failed for good (after retries, on every server)."""


class ModelMismatch(RecoError):
    """The served model is not the one this job expects."""


class RejectedInput(RecoError):
    """The server refused this event (gRPC INVALID_ARGUMENT): sending it again cannot help."""


class CredentialError(RecoError):
    """The server checks a credential (``recoserve serve --api-key``) and this request had
    none or a wrong one; not retried."""


def final_error(model: str, url: str, error: Exception) -> RecoError:
    """The typed error of a failure that is not retried, chosen by the gRPC status code."""
    if _needs_credential(error):
        return CredentialError(
            f"{model} on {url}: the server wants a credential (x-api-key or a bearer token) "
            "that this client did not send, or that is wrong or expired: RecoClient(api_key=...) "
            "or RecoClient(token=...), or `recoserve reconstruct --api-key / --token` "
            "(RECOSERVE_API_KEY / RECOSERVE_TOKEN)"
        )
    status = getattr(error, "status", lambda: None)()
    kind = RejectedInput if status == "StatusCode.INVALID_ARGUMENT" else RecoError
    return kind(f"{model} on {url}: {_message(error)}")


@dataclass
class Outcome:
    """One event of ``reconstruct_many``: its index in the input, and a result or an error."""

    index: int
    result: RecoResult | None = None
    error: str | None = None


def event_arrays(
    event: Event | tuple[np.ndarray, np.ndarray] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(hits [N, 5], tracks [T, 9]) float32 from an Event, a (hits, tracks) pair or hits alone
    (float64 or float16 arrays are converted; a value beyond float32's range becomes inf and is
    refused); raises InvalidInput naming the problem."""
    if isinstance(event, Event):
        hits, tracks = event.hits.features(), event.tracks.features()
    elif isinstance(event, tuple):
        hits, tracks = event
    else:
        hits, tracks = event, np.zeros((0, 9), np.float32)
    return check_hits(_float32(hits)), check_tracks(_float32(tracks))


def _float32(table: np.ndarray) -> np.ndarray:
    array = np.asarray(table)
    if array.dtype.kind == "f" and array.dtype != np.float32:
        with np.errstate(over="ignore"):  # beyond float32: inf, refused by the check
            return array.astype(np.float32)
    return array


Headers = dict[str, str] | None


def credential_headers(api_key: str | None, token: str | None = None) -> Headers:
    """The metadata that carries the credentials on every RPC (None: send none): the API key
    as Triton's restricted APIs and the entry read it, a token as a bearer token."""
    headers = {}
    for name, value in (("api_key", api_key), ("token", token)):
        if value is not None and (not value or any(c.isspace() for c in value)):
            raise ValueError(f"{name} must be a non-empty string without whitespace")
    if api_key is not None:
        headers[GRPC_API_KEY_METADATA] = api_key
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return headers or None


def infer_inputs(tensors: dict[str, np.ndarray]) -> list[Any]:
    """tritonclient gRPC inputs of one event: each float32 table as a batch of one."""
    grpcclient = _grpc()
    inputs = []
    for name, array in tensors.items():
        tensor = grpcclient.InferInput(name, [1, *array.shape], "FP32")
        tensor.set_data_from_numpy(np.ascontiguousarray(array[None]))
        inputs.append(tensor)
    return inputs


def connection_options(
    servers: str | list[str],
    compression: str | None,
    ssl: bool,
    root_certificates: str | Path | None,
    private_key: str | Path | None,
    certificate_chain: str | Path | None,
) -> tuple[list[str], dict[str, Any]]:
    """(server URLs, tritonclient connection keyword arguments), validated."""
    urls = [servers] if isinstance(servers, str) else list(servers)
    if not urls:
        raise ValueError("give at least one server URL")
    for url in urls:
        check_address(url)
    if compression not in (None, "gzip", "deflate"):
        raise ValueError("compression must be None, 'gzip' or 'deflate'")
    options: dict[str, Any] = {"ssl": ssl}
    for key, value in (
        ("root_certificates", root_certificates),
        ("private_key", private_key),
        ("certificate_chain", certificate_chain),
    ):
        if value is not None:
            if not Path(value).is_file():
                raise ValueError(f"{key}: no such file {value}")
            options[key] = str(value)
    return urls, options


def check_address(url: str) -> None:
    """A gRPC address is host:port, without a scheme; ValueError with the fix otherwise."""
    if "://" in url:
        bare = url.split("://", 1)[1].rstrip("/")
        raise ValueError(f"{url!r}: give host:port without a scheme, e.g. {bare!r}")
    host, _, port = url.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"{url!r} is not host:port; Triton's gRPC port is 8001 by default (e.g. 127.0.0.1:8001)"
        )


def diagnose(url: str, model: str, ready: Callable[[], bool] | None = None) -> str:
    """Why ``url`` cannot serve ``model``, in words a user can act on (only on failures)."""
    host, _, port = url.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=2.0) as probe:
            probe.sendall(b"GET /v2/health/live HTTP/1.0\r\n\r\n")
            probe.settimeout(2.0)
            head = probe.recv(64)
    except ConnectionRefusedError:
        return f"{url}: nothing listens there (is `recoserve serve` running?)"
    except OSError as err:
        return f"{url}: cannot connect ({err})"
    if head.startswith(b"HTTP/"):
        return (
            f"{url}: an HTTP endpoint, not gRPC (Triton's HTTP port is 8000 and its gRPC port "
            "8001 by default; the REST gateway, 8080, is for HTTP clients)"
        )
    if ready is not None and ready():
        return f"{url}: Triton is up but {model} is not ready (still loading, or not served)"
    return f"{url}: a gRPC endpoint that does not answer as Triton (not ready, or not Triton)"


def checked_parameters(
    config: dict[str, Any], expected: dict[str, str] | None, url: str, model: str
) -> dict[str, str]:
    """The model's config parameters; ModelMismatch if an expected one differs."""
    params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
    for key, value in (expected or {}).items():
        if params.get(key) != value:
            raise ModelMismatch(
                f"{url} serves {model} with {key}={params.get(key)!r}, this job expects {value!r}"
            )
    return params


def _needs_credential(error: Exception) -> bool:
    # Triton answers UNAVAILABLE to a request that lacks the key its restricted APIs expect;
    # the authenticated entry (Envoy) answers UNAUTHENTICATED.
    status = getattr(error, "status", lambda: None)()
    return status == "StatusCode.UNAUTHENTICATED" or "protocol is restricted" in str(error)


def is_transient(error: Exception) -> bool:
    if _needs_credential(error):
        return False  # another attempt or server would not have the key either
    status = getattr(error, "status", lambda: None)()
    return status in TRANSIENT or (status is None and "unavailable" in str(error).lower())


def _grpc() -> Any:
    import tritonclient.grpc as grpcclient

    return grpcclient


class _Server:
    """One Triton endpoint: its client, health state and shared-memory regions."""

    def __init__(
        self, url: str, options: dict[str, Any], version: str = "", headers: Headers = None
    ) -> None:
        self.url = url
        self.version = version  # "" = the latest version Triton serves
        self.headers = headers  # sent with every RPC (the credential)
        self.client = _grpc().InferenceServerClient(url, **options)
        self.state = ServerState()
        self.shm = _RegionPool(self.client, headers)
        self.shm_failed = False

    def healthy(self, model: str) -> bool:
        try:
            return self.server_ready() and bool(
                self.client.is_model_ready(model, self.version, headers=self.headers)
            )
        except Exception:
            return False

    def server_ready(self) -> bool:
        try:
            return bool(self.client.is_server_ready(headers=self.headers))
        except Exception:
            return False


class _SharedMemory:
    """One pair of input and output system shared-memory regions, grown when needed. A pair
    serves one request at a time: ``_RegionPool`` lends it out."""

    def __init__(self, client: Any, headers: Headers = None) -> None:
        with warnings.catch_warnings():
            # tritonclient 2.51's module imports the deprecated pkg_resources: not ours to fix
            warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
            import tritonclient.utils.shared_memory as shm

        self.shm = shm
        self.client = client
        self.headers = headers
        self.tag = uuid.uuid4().hex[:12]
        self.size = 0
        self.regions: dict[str, Any] = {}
        self.unreleased: list[str] = []  # names the server refused to unregister (still in use)

    def ensure(self, size: int) -> None:
        self.release_pending()
        if size <= self.size:
            return
        self.close()
        # Grown regions get fresh names: the server may still hold the old ones for a moment
        # after answering (it releases a request's regions asynchronously), and registering a
        # name it holds fails with ALREADY_EXISTS (seen under load in `recoserve bench`).
        self.tag = uuid.uuid4().hex[:12]
        self.size = max(size, 1 << 20)
        for kind in ("in", "out"):
            name = f"recoserve_{self.tag}_{kind}"
            handle = self.shm.create_shared_memory_region(name, f"/{name}", self.size)
            self.regions[kind] = handle
            self.client.register_system_shared_memory(
                name, f"/{name}", self.size, headers=self.headers
            )

    def close(self) -> None:
        names = [f"recoserve_{self.tag}_{kind}" for kind in self.regions]
        for handle in self.regions.values():
            with contextlib.suppress(Exception):
                self.shm.destroy_shared_memory_region(handle)
        self.unreleased = [name for name in self.unreleased + names if not self._unregister(name)]
        self.regions = {}
        self.size = 0

    def release_pending(self) -> None:
        """Unregister again the names the server still held when they were given up: it
        releases a request's regions asynchronously, so a refusal just after answering is
        normal and the next request's retry succeeds."""
        if self.unreleased:
            self.unreleased = [name for name in self.unreleased if not self._unregister(name)]

    def _unregister(self, name: str) -> bool:
        try:
            self.client.unregister_system_shared_memory(name, headers=self.headers)
            return True
        except Exception:
            return False


class _RegionPool:
    """The shared-memory region pairs of one server, one per request in flight: threads that
    share a client never write into the same region (a pair is created when all are lent)."""

    def __init__(self, client: Any, headers: Headers = None) -> None:
        self.client = client
        self.headers = headers
        self.lock = threading.Lock()
        self.free: list[_SharedMemory] = []
        self.pairs: list[_SharedMemory] = []

    @contextlib.contextmanager
    def lease(self) -> Iterator[_SharedMemory]:
        with self.lock:
            pair = self.free.pop() if self.free else None
            if pair is None:
                pair = _SharedMemory(self.client, self.headers)
                self.pairs.append(pair)
        try:
            yield pair
        finally:
            with self.lock:
                self.free.append(pair)

    def registered(self) -> int:
        """Region pairs that hold registered regions."""
        with self.lock:
            return sum(1 for pair in self.pairs if pair.regions)

    def close(self, grace: float = 2.0) -> None:
        """Unregister every pair; names the server still holds are retried for up to
        ``grace`` seconds, so that a closed client leaves no region registered."""
        with self.lock:
            for pair in self.pairs:
                pair.close()
            deadline = time.monotonic() + grace
            while any(p.unreleased for p in self.pairs) and time.monotonic() < deadline:
                time.sleep(0.05)
                for pair in self.pairs:
                    pair.release_pending()
            self.pairs, self.free = [], []


class RecoClient:
    """Synchronous client of the recoserve Triton models (see the module docstring)."""

    def __init__(
        self,
        servers: str | list[str] = "127.0.0.1:8001",
        *,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.2,
        cooldown: float = 10.0,
        shared_memory: str = "auto",
        compression: str | None = None,
        ssl: bool = False,
        root_certificates: str | Path | None = None,
        private_key: str | Path | None = None,
        certificate_chain: str | Path | None = None,
        expected_checkpoints: dict[str, str] | None = None,
        model_version: str | int = "",
        api_key: str | None = None,
        token: str | None = None,
    ) -> None:
        if shared_memory not in ("never", "auto", "always"):
            raise ValueError("shared_memory must be 'never', 'auto' or 'always'")
        urls, options = connection_options(
            servers, compression, ssl, root_certificates, private_key, certificate_chain
        )
        headers = credential_headers(api_key, token)
        self.servers = [_Server(u, options, str(model_version), headers) for u in urls]
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.cooldown = cooldown
        self.shared_memory = shared_memory
        self.compression = compression
        self.expected_checkpoints = expected_checkpoints
        self._checked: set[str] = set()

    # -- public API -----------------------------------------------------------------------

    def cluster(self, event: Event | np.ndarray) -> ClusterResult:
        """Clusters of one event (an Event or its HITS array [N, 5])."""
        hits, _ = event_arrays(
            event if not isinstance(event, np.ndarray) else (event, np.zeros((0, 9), np.float32))
        )
        return self._call("hgcal_clustering", {"HITS": hits}, CLUSTER_OUTPUTS)

    def reconstruct(self, event: Event | tuple[np.ndarray, np.ndarray]) -> RecoResult:
        """Clusters and particle candidates of one event (an Event or (hits, tracks))."""
        hits, tracks = event_arrays(event)
        result = self._call("event_reco", {"HITS": hits, "TRACKS": tracks}, RECO_OUTPUTS)
        assert isinstance(result, RecoResult)
        return result

    def check_model(
        self, model: str = "event_reco", server: _Server | None = None
    ) -> dict[str, str]:
        """The served model's checkpoint hashes; raises ModelMismatch if they differ from
        ``expected_checkpoints`` (keys ``clustering_sha256``, ``mlpf_sha256``)."""
        target = server or self._pick(model)
        config = target.client.get_model_config(
            model, target.version, headers=target.headers, as_json=True
        )["config"]
        return checked_parameters(config, self.expected_checkpoints, target.url, model)

    def reconstruct_many(
        self, events: Iterable[Event | tuple[np.ndarray, np.ndarray]], in_flight: int = 8
    ) -> Iterator[Outcome]:
        """Stream events over gRPC; yields one Outcome per event, in completion order."""
        source = enumerate(events)
        todo: list[tuple[int, dict[str, np.ndarray]]] = []  # events to (re)send
        pending: dict[int, dict[str, np.ndarray]] = {}
        exhausted = False
        failures = 0
        while True:
            server = self._pick("event_reco")
            answers: queue.Queue[tuple[int, Any, Any]] = queue.Queue()
            server.client.start_stream(
                callback=lambda result, error, q=answers: q.put((-1, result, error)),
                headers=server.headers,
                compression_algorithm=self.compression,
            )
            broken = False
            try:
                while not broken:
                    while len(pending) < in_flight and (todo or not exhausted):
                        if todo:
                            index, tensors = todo.pop(0)
                        else:
                            try:
                                index, event = next(source)
                            except StopIteration:
                                exhausted = True
                                break
                            try:
                                hits, tracks = event_arrays(event)
                            except InvalidInput as err:
                                yield Outcome(index, error=str(err))
                                continue
                            tensors = {"HITS": hits, "TRACKS": tracks}
                        pending[index] = tensors
                        try:
                            server.client.async_stream_infer(
                                "event_reco",
                                self._inputs(tensors),
                                model_version=server.version,
                                outputs=self._outputs(RECO_OUTPUTS),
                                request_id=str(index),
                            )
                        except InferenceServerException:
                            broken = True  # the stream died: the event stays pending, resent
                            break
                    if broken:
                        break
                    if not pending:
                        return
                    try:
                        _, result, error = answers.get(timeout=self.timeout)
                    except queue.Empty:
                        error = TimeoutError(f"no answer from {server.url} in {self.timeout} s")
                        result = None
                    if error is None:
                        index = int(result.get_response().id)
                        server.state.answered()
                        if index in pending:
                            del pending[index]
                            outputs = {n: result.as_numpy(n)[0] for n in RECO_OUTPUTS}
                            yield Outcome(index, decode_result(outputs, server.url))  # type: ignore[arg-type]
                        continue
                    request_id = _request_id(error)
                    if request_id is not None and not is_transient(error):
                        pending.pop(request_id, None)
                        yield Outcome(request_id, error=str(error))
                        continue
                    broken = True  # the server or the stream failed: resend what is pending
            finally:
                with contextlib.suppress(Exception):
                    server.client.stop_stream(cancel_requests=True)
            server.state.failed(self.cooldown)
            failures += 1
            if failures > self.retries * len(self.servers):
                for index in sorted(pending):
                    yield Outcome(index, error=f"gave up after {failures} failed streams")
                return
            todo = sorted(pending.items()) + todo
            pending = {}

    def close(self) -> None:
        for server in self.servers:
            server.shm.close()
            with contextlib.suppress(Exception):
                server.client.close()

    def __enter__(self) -> RecoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------

    def _pick(self, model: str) -> _Server:
        """The first server that is known healthy, or answers its health check (policy.py)."""
        for server in in_order_of_preference(self.servers):
            if server.state.known_healthy() or server.healthy(model):
                server.state.answered()
                if self.expected_checkpoints and server.url not in self._checked:
                    self.check_model(model, server)
                    self._checked.add(server.url)
                return server
            server.state.failed(self.cooldown)
        reasons = "; ".join(diagnose(s.url, model, s.server_ready) for s in self.servers)
        raise RecoError(f"no healthy server with {model}: {reasons}")

    def _inputs(self, tensors: dict[str, np.ndarray]) -> list[Any]:
        return infer_inputs(tensors)

    def _outputs(self, names: tuple[str, ...]) -> list[Any]:
        return [_grpc().InferRequestedOutput(n) for n in names]

    def _use_shm(self, server: _Server) -> bool:
        if self.shared_memory == "never" or server.shm_failed:
            return False
        host = server.url.rsplit(":", 1)[0]
        return self.shared_memory == "always" or is_loopback(host)

    def _call(
        self, model: str, tensors: dict[str, np.ndarray], names: tuple[str, ...]
    ) -> ClusterResult | RecoResult:
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                server = self._pick(model)
            except ModelMismatch:
                raise
            except RecoError as err:  # no healthy server right now: wait and look again
                last = err
                time.sleep(self.backoff * 2**attempt)
                continue
            try:
                if self._use_shm(server):
                    try:
                        answer = self._call_shm(server, model, tensors, names)
                        server.state.answered()
                        return answer
                    except _ShmUnavailable as refusal:
                        # e.g. behind a load balancer, or an entry that allows shared memory
                        # from the server's own machine only: plain gRPC from now on
                        server.shm_failed = True
                        _log.warning(
                            "shared memory unavailable on %s (%s); using plain gRPC",
                            server.url,
                            str(refusal).strip()[:200],
                        )
                result = server.client.infer(
                    model,
                    self._inputs(tensors),
                    model_version=server.version,
                    outputs=self._outputs(names),
                    client_timeout=self.timeout,
                    headers=server.headers,
                    compression_algorithm=self.compression,
                )
                server.state.answered()
                return decode_result({n: result.as_numpy(n)[0] for n in names}, server.url)
            except Exception as err:
                if not is_transient(err):
                    raise final_error(model, server.url, err) from err
                last = err
                server.state.failed(self.cooldown)
                time.sleep(self.backoff * 2**attempt)
        raise RecoError(f"{model} failed after {self.retries + 1} attempts: {_message(last)}")

    def _call_shm(
        self, server: _Server, model: str, tensors: dict[str, np.ndarray], names: tuple[str, ...]
    ) -> ClusterResult | RecoResult:
        grpcclient = _grpc()
        n_hits = len(tensors["HITS"])
        n_tracks = len(tensors.get("TRACKS", ()))
        in_bytes = sum(a.nbytes for a in tensors.values())
        # upper bounds: K <= N clusters, P <= T + K candidates
        out_sizes = {
            "HIT_CLUSTER": 8 * n_hits,
            "CLUSTERS": 4 * len(CLUSTER_COLUMNS) * n_hits,
            "CANDIDATES": 4 * len(CANDIDATE_COLUMNS) * (n_hits + n_tracks),
        }
        out_bytes = sum(out_sizes[n] for n in names)
        with server.shm.lease() as region:
            try:
                region.ensure(max(in_bytes, out_bytes) + 64)
            except Exception as err:
                raise _ShmUnavailable(str(err)) from err
            inputs = []
            offset = 0
            for name, array in tensors.items():
                tensor = grpcclient.InferInput(name, [1, *array.shape], "FP32")
                region.shm.set_shared_memory_region(region.regions["in"], [array], offset=offset)
                tensor.set_shared_memory(f"recoserve_{region.tag}_in", array.nbytes, offset=offset)
                inputs.append(tensor)
                offset += array.nbytes
            outputs = []
            offset = 0
            for name in names:
                out = grpcclient.InferRequestedOutput(name)
                out.set_shared_memory(
                    f"recoserve_{region.tag}_out", max(out_sizes[name], 8), offset=offset
                )
                outputs.append((name, out, offset))
                offset += max(out_sizes[name], 8)
            try:
                result = server.client.infer(
                    model,
                    inputs,
                    model_version=server.version,
                    outputs=[o for _, o, _ in outputs],
                    client_timeout=self.timeout,
                    headers=server.headers,
                )
            except Exception as err:
                # Behind a load balancer the region is registered on one replica only; another
                # replica does not know it. Fall back to plain gRPC for this server.
                if "shared memory" in str(err).lower() or "region" in str(err).lower():
                    raise _ShmUnavailable(str(err)) from err
                raise
            arrays: dict[str, np.ndarray] = {}
            for name, _, off in outputs:
                meta = result.get_output(name)
                shape = list(meta.shape)
                dtype = np.int64 if meta.datatype == "INT64" else np.float32
                arrays[name] = region.shm.get_contents_as_numpy(
                    region.regions["out"], dtype, shape, offset=off
                )[0].copy()  # a copy: the pair goes back to the pool when this block ends
        return decode_result(arrays, server.url)


class _ShmUnavailable(RuntimeError):
    pass


def _request_id(error: Exception) -> int | None:
    """The request id an error of a streamed request belongs to, if it says."""
    text = str(error)
    if "request id:" in text:
        with contextlib.suppress(ValueError):
            return int(text.split("request id:")[1].split("]")[0].strip())
    return None


def _message(error: Exception | None) -> str:
    if error is None:
        return "unknown error"
    message = getattr(error, "message", None)
    return str(message() if callable(message) else error)
