"""Nothing reachable from other machines without a credential, against a real Triton: its own
restricted-API checks (what compose and Kubernetes replicas run), and the authenticated entry
(Envoy) that `recoserve serve --host 0.0.0.0 --api-key` puts in front of it. On loopback: the
checks are the same whatever address they listen on, and tests send traffic to 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from recoserve.client import AsyncRecoClient, CredentialError, RecoClient
from recoserve.client.sync import infer_inputs
from recoserve.contract import API_KEY_HEADER, GRPC_API_KEY_METADATA, MAX_HITS
from recoserve.events.model import Event
from recoserve.server.envoy import CLIENT_HEADER, EntryPolicy, Envoy, authenticated_entry
from recoserve.server.triton import TritonError, TritonServer, free_ports, start_triton
from recoserve.sim.classes import pf_event

KEY = "k-test-0123456789"
RESTRICTED = "protocol is restricted"


@pytest.fixture(scope="module")
def checked(repository: Path) -> Iterator[TritonServer]:
    """Triton with the API key checks of `recoserve serve --host 0.0.0.0 --api-key`."""
    with start_triton(repository, log_path=repository.parent / "auth.log", api_key=KEY) as server:
        yield server


def _http(server: TritonServer, path: str, method: str = "GET", key: str | None = None) -> int:
    request = urllib.request.Request(f"http://{server.http_url}{path}", method=method)
    if key is not None:
        request.add_header(API_KEY_HEADER, key)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def _refused_without_the_key(url: str, event: Event) -> None:
    """No key and a wrong key both give CredentialError at once (not retried)."""
    for api_key in (None, "wrong-key"):
        with (
            RecoClient(url, api_key=api_key, retries=3) as client,
            pytest.raises(CredentialError, match="credential"),
        ):
            client.reconstruct(event)


def test_serving_other_machines_without_a_key_is_refused(repository: Path) -> None:
    server = TritonServer(repository, host="0.0.0.0")
    with pytest.raises(TritonError, match="--api-key"):
        server.launch()
    assert server.process is None  # refused before anything started


def test_serve_on_a_public_address_needs_a_credential(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if k != "RECOSERVE_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "recoserve.cli", "serve", "--host", "0.0.0.0",
         "--repository", str(tmp_path / "repo")],
        capture_output=True, text=True, timeout=120, env=environment,
    )  # fmt: skip
    assert done.returncode != 0
    assert "needs a credential" in done.stderr and "--api-key" in done.stderr
    assert not (tmp_path / "repo").exists()  # nothing exported, nothing started


def test_only_clients_with_the_key_get_answers(checked: TritonServer, server: TritonServer) -> None:
    event = pf_event(77, 0)
    _refused_without_the_key(checked.grpc_url, event)
    with RecoClient(checked.grpc_url, api_key=KEY) as client:
        answer = client.reconstruct(event)  # shared memory is refused: plain gRPC instead
    with RecoClient(server.grpc_url) as reference_client:
        reference = reference_client.reconstruct(event)
    np.testing.assert_array_equal(answer.hit_cluster, reference.hit_cluster)
    assert answer.candidates["pdg"].tolist() == reference.candidates["pdg"].tolist()

    async def run() -> int:
        async with AsyncRecoClient(checked.grpc_url, api_key=KEY) as aio:
            return len((await aio.reconstruct(event)).candidates)

    assert asyncio.run(run()) == len(reference.candidates)


def test_admin_apis_are_closed_even_with_the_key(checked: TritonServer) -> None:
    client = grpcclient.InferenceServerClient(checked.grpc_url)
    with_key = {GRPC_API_KEY_METADATA: KEY}
    try:
        assert client.is_server_ready() and client.is_model_ready("event_reco")  # health: open
        assert client.get_model_metadata("event_reco", headers=with_key).name == "event_reco"
        with pytest.raises(InferenceServerException, match=RESTRICTED):
            client.get_model_metadata("event_reco")  # no key
        for admin in (
            lambda: client.unload_model("event_reco", headers=with_key),
            lambda: client.register_system_shared_memory("x", "/x", 64, headers=with_key),
            lambda: client.update_log_settings({"log_verbose_level": 1}, headers=with_key),
            lambda: client.update_trace_settings(settings={"trace_rate": "1"}, headers=with_key),
        ):
            with pytest.raises(InferenceServerException, match=RESTRICTED):
                admin()
        assert client.is_model_ready("event_reco")  # the unload did not happen
    finally:
        client.close()
    assert _http(checked, "/v2/health/ready") == 200
    assert _http(checked, "/v2/models/event_reco") == 403
    assert _http(checked, "/v2/models/event_reco", key=KEY) == 200
    assert _http(checked, "/v2/repository/index", "POST", key=KEY) == 403
    assert _http(checked, "/v2/repository/models/event_reco/unload", "POST", key=KEY) == 403


# -- the authenticated entry (Envoy) in front of a Triton on loopback -----------------------------
# `recoserve serve --host 0.0.0.0 --api-key` puts it on the public address; here it listens on
# 127.0.0.1, and the checks are the same.

ALICE, BOB = "k-alice-0123456789", "k-bob-9876543210"
SECRET = "entry-test-secret-0123456789abcdef"


def _token(secret: str = SECRET, expires_in: float | None = 300.0, subject: str = "carol") -> str:
    claims: dict[str, object] = {"sub": subject}
    if expires_in is not None:
        claims["exp"] = int(time.time() + expires_in)
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.fixture(scope="module")
def entry(server: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Envoy]:
    policy = EntryPolicy(api_keys={ALICE: "alice", BOB: "bob"}, jwt_secret=SECRET)
    with authenticated_entry([server], policy, tmp_path_factory.mktemp("entry")) as envoy:
        yield envoy


def _entry_http(
    envoy: Envoy, path: str, method: str = "GET", key: str | None = None, token: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://{envoy.http_url}{path}", method=method)
    if key is not None:
        request.add_header(API_KEY_HEADER, key)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return int(err.code), dict(err.headers), err.read()


def _grpc_status(call: Callable[[], object]) -> str:
    try:
        call()
    except InferenceServerException as err:
        return str(err.status())
    return "OK"


def test_the_entry_answers_only_clients_with_a_key(entry: Envoy, server: TritonServer) -> None:
    event = pf_event(78, 0)
    _refused_without_the_key(entry.url, event)
    for api_key in (None, "wrong-key"):
        assert _entry_http(entry, "/v2/models/event_reco", key=api_key)[0] == 401
    with RecoClient(server.grpc_url) as direct:
        reference = direct.reconstruct(event)
    for api_key in (ALICE, BOB):  # several keys at once: one can be rotated out
        with RecoClient(entry.url, api_key=api_key, shared_memory="never") as client:
            answer = client.reconstruct(event)
        np.testing.assert_array_equal(answer.hit_cluster, reference.hit_cluster)
        assert answer.candidates["pdg"].tolist() == reference.candidates["pdg"].tolist()
        status, _, body = _entry_http(entry, "/v2/models/event_reco", key=api_key)
        assert status == 200 and b"event_reco" in body


def test_the_entry_accepts_valid_bearer_tokens_only(entry: Envoy, server: TritonServer) -> None:
    event = pf_event(81, 0)
    refused = {
        "expired": _token(expires_in=-120),
        "signed with another secret": _token(secret="another-secret-0123456789abcdef"),
        "without an expiry": _token(expires_in=None),
        "not a token": "not.a.token",
    }
    for name, token in refused.items():
        assert _entry_http(entry, "/v2/models/event_reco", token=token)[0] == 401, name
        with (
            RecoClient(entry.url, token=token, retries=3, shared_memory="never") as client,
            pytest.raises(CredentialError, match="expired"),
        ):
            client.reconstruct(event)
    # A bad token is refused even next to a good key: what is sent must all be valid.
    assert (
        _entry_http(entry, "/v2/models/event_reco", key=ALICE, token=refused["expired"])[0] == 401
    )
    token = _token()
    assert _entry_http(entry, "/v2/models/event_reco", token=token)[0] == 200
    with RecoClient(entry.url, token=token, shared_memory="never") as client:
        answer = client.reconstruct(event)
    with RecoClient(server.grpc_url) as direct:
        reference = direct.reconstruct(event)
    np.testing.assert_array_equal(answer.hit_cluster, reference.hit_cluster)


def test_an_oversize_event_through_the_entry_is_refused_by_name(entry: Envoy) -> None:
    """A body beyond the contract's hit limit passes the entry (which bounds requests in flight,
    not their size) and is refused by the model's check with INVALID_ARGUMENT naming the limit;
    the entry and Triton keep serving."""
    client = grpcclient.InferenceServerClient(entry.url)
    try:
        oversize = np.zeros((1, MAX_HITS + 1, 5), np.float32)
        tensor = grpcclient.InferInput("HITS", list(oversize.shape), "FP32")
        tensor.set_data_from_numpy(oversize)
        with pytest.raises(InferenceServerException) as refused:
            client.infer("hgcal_clustering", [tensor], headers={API_KEY_HEADER: ALICE})
        assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "more than the limit" in refused.value.message()
        assert client.is_model_ready("hgcal_clustering")
    finally:
        client.close()


def test_a_client_cannot_name_itself_to_the_entry(entry: Envoy) -> None:
    """The client name the limits use comes from the credential, never from the request."""
    request = urllib.request.Request(f"http://{entry.http_url}/v2/models/event_reco")
    request.add_header(CLIENT_HEADER, "alice")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 401


def test_the_entry_opens_health_and_closes_admin_routes(entry: Envoy) -> None:
    client = grpcclient.InferenceServerClient(entry.url)
    key = {API_KEY_HEADER: ALICE}
    try:
        assert client.is_server_live() and client.is_server_ready()  # no credential needed
        assert client.is_model_ready("event_reco")
        for admin in (
            lambda: client.unload_model("event_reco", headers=key),
            lambda: client.load_model("event_reco", headers=key),
            lambda: client.get_model_repository_index(headers=key),
            lambda: client.update_log_settings({"log_verbose_level": 1}, headers=key),
            lambda: client.update_trace_settings(settings={"trace_rate": "1"}, headers=key),
            lambda: client.get_cuda_shared_memory_status(headers=key),
        ):
            assert _grpc_status(admin) == "StatusCode.PERMISSION_DENIED"
        assert _grpc_status(lambda: client.unload_model("event_reco")) == (
            "StatusCode.UNAUTHENTICATED"  # who you are is checked before what you ask
        )
        assert client.is_model_ready("event_reco")  # nothing was unloaded
    finally:
        client.close()
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/event_reco/ready"):
        assert _entry_http(entry, path)[0] == 200
    for method, path in (
        ("POST", "/v2/repository/index"),
        ("POST", "/v2/repository/models/event_reco/unload"),
        ("POST", "/v2/logging"),
        ("GET", "/v2/trace/setting"),
        ("GET", "/v2/cudasharedmemory/status"),
    ):
        status, _, body = _entry_http(entry, path, method, key=ALICE)
        assert status == 403 and b"not exposed" in body, path


def test_shared_memory_through_the_entry_only_from_this_machine(
    entry: Envoy, server: TritonServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    event = pf_event(79, 0)
    direct = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        with RecoClient(entry.url, api_key=ALICE, shared_memory="always") as local:
            local.reconstruct(event)
            regions = direct.get_system_shared_memory_status(as_json=True)["regions"]
            assert any(name.startswith("recoserve_") for name in regions)  # it used /dev/shm
        # An entry that counts no address as this machine's: the client is told, and answers
        # come over plain gRPC.
        remote_only = EntryPolicy(api_keys={ALICE: "alice"}, local_networks=("192.0.2.0/24",))
        with authenticated_entry([server], remote_only, tmp_path) as far:
            status = _grpc_status(
                lambda: grpcclient.InferenceServerClient(far.url).get_system_shared_memory_status(
                    headers={API_KEY_HEADER: ALICE}
                )
            )
            assert status == "StatusCode.PERMISSION_DENIED"
            assert _entry_http(far, "/v2/systemsharedmemory/status", key=ALICE)[0] == 403
            with (
                caplog.at_level(logging.WARNING, "recoserve.client"),
                RecoClient(far.url, api_key=ALICE, shared_memory="always") as remote,
            ):
                answer = remote.reconstruct(event)
            assert "shared memory unavailable" in caplog.text  # the client is told
            assert "not exposed" in caplog.text  # and why
            with RecoClient(server.grpc_url, shared_memory="never") as reference:
                expected = reference.reconstruct(event)
            np.testing.assert_array_equal(answer.hit_cluster, expected.hit_cluster)
    finally:
        direct.close()


def test_the_entry_limits_each_client_and_says_when_to_retry(
    server: TritonServer, tmp_path: Path
) -> None:
    policy = EntryPolicy(api_keys={ALICE: "alice", BOB: "bob"}, requests_per_minute=6, burst=3)
    with authenticated_entry([server], policy, tmp_path) as limited:
        answers = [_entry_http(limited, "/v2/models/event_reco", key=ALICE) for _ in range(5)]
        assert [status for status, _, _ in answers] == [200, 200, 200, 429, 429]
        assert answers[-1][1].get("retry-after") == "1"
        assert _entry_http(limited, "/v2/models/event_reco", key=BOB)[0] == 200  # its own bucket
        client = grpcclient.InferenceServerClient(limited.url)
        try:  # gRPC has buckets of its own
            statuses = [
                _grpc_status(
                    lambda: client.get_model_metadata("event_reco", headers={API_KEY_HEADER: ALICE})
                )
                for _ in range(4)
            ]
        finally:
            client.close()
        # UNAVAILABLE: what gRPC clients retry, with backoff
        assert statuses == ["OK", "OK", "OK", "StatusCode.UNAVAILABLE"]
        assert _entry_http(limited, "/v2/health/ready")[0] == 200  # health is not limited


def test_the_entry_refuses_excess_requests_at_once(server: TritonServer, tmp_path: Path) -> None:
    """Beyond its in-flight bound the entry answers UNAVAILABLE / 503 with a retry hint
    instead of queueing; what it accepts is answered."""
    policy = EntryPolicy(api_keys={ALICE: "alice"}, max_in_flight=1)
    hits, tracks = pf_event(80, 0).hits.features(), pf_event(80, 0).tracks.features()
    with authenticated_entry([server], policy, tmp_path) as bounded:

        def one() -> str:
            client = grpcclient.InferenceServerClient(bounded.url)
            inputs = infer_inputs({"HITS": hits, "TRACKS": tracks})
            try:
                return _grpc_status(
                    lambda: client.infer("event_reco", inputs, headers={API_KEY_HEADER: ALICE})
                )
            finally:
                client.close()

        body = json.dumps(
            {
                "inputs": [
                    {"name": name, "shape": [1, *a.shape], "datatype": "FP32",
                     "data": a.ravel().tolist()}
                    for name, a in (("HITS", hits), ("TRACKS", tracks))
                ]
            }
        ).encode()  # fmt: skip

        def one_http() -> tuple[int, str | None]:
            request = urllib.request.Request(
                f"http://{bounded.http_url}/v2/models/event_reco/infer", data=body, method="POST"
            )
            request.add_header(API_KEY_HEADER, ALICE)
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    return int(response.status), None
            except urllib.error.HTTPError as err:
                return int(err.code), err.headers.get("retry-after")

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(lambda _: one(), range(16)))
            http_outcomes = list(pool.map(lambda _: one_http(), range(16)))
        assert set(outcomes) <= {"OK", "StatusCode.UNAVAILABLE"}
        assert outcomes.count("OK") >= 1 and outcomes.count("StatusCode.UNAVAILABLE") >= 1
        assert set(http_outcomes) <= {(200, None), (503, "1")}
        assert (200, None) in http_outcomes and (503, "1") in http_outcomes
        assert _entry_http(bounded, "/v2/models/event_reco", key=ALICE)[0] == 200  # freed


def test_serve_on_a_public_address_puts_triton_behind_the_entry(
    repository: Path, tmp_path: Path
) -> None:
    """`serve --host 0.0.0.0 --api-key`: the ports asked for are Envoy's, Triton listens on
    loopback only; when `serve` is killed outright (no cleanup runs), Triton, its stubs and
    Envoy end with it. (Traffic goes to 127.0.0.1 only.)"""
    http_port, grpc_port, metrics_port = free_ports(3)
    # TMPDIR: the entry's configuration goes under this test's directory (a killed serve
    # cannot remove it)
    environment = {**os.environ, "RECOSERVE_API_KEY": KEY, "TMPDIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "recoserve.cli", "serve", "--host", "0.0.0.0",
         "--repository", str(repository), "--gateway-port", "0", "--http-port", str(http_port),
         "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port)],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        entry = Envoy(process, grpc_port, 0, http_port)
        deadline = time.monotonic() + 240
        while _entry_status(entry) != 200:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        assert _entry_http(entry, "/v2/models/event_reco")[0] == 401
        assert _entry_http(entry, "/v2/models/event_reco", key=KEY)[0] == 200
        children = psutil.Process(process.pid).children(recursive=True)
        tritons = [p for p in children if p.name() == "tritonserver"]
        envoys = [p for p in children if "envoy" in p.name()]
        assert len(tritons) == 1 and envoys
        listening = {
            c.laddr.ip for c in tritons[0].net_connections("tcp") if c.status == psutil.CONN_LISTEN
        }
        assert listening and listening <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening
        envoy_ports = {
            (c.laddr.ip, c.laddr.port)
            for p in envoys
            for c in p.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN
        }
        assert {("0.0.0.0", http_port), ("0.0.0.0", grpc_port)} <= envoy_ports
        stubs = [p for t in tritons for p in t.children(recursive=True)]
        assert stubs  # the Python-backend stubs
    finally:
        process.kill()
        process.wait(60)
    deadline = time.monotonic() + 60
    while [p for p in children if _alive(p)] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [p.name() for p in children if _alive(p)]


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _entry_status(envoy: Envoy) -> int:
    try:
        return _entry_http(envoy, "/v2/health/ready")[0]
    except OSError:
        return 0
