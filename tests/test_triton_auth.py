"""Triton serving other machines lets no one in without the API key: its own restricted-API
checks on gRPC and HTTP, against a real Triton (on loopback: the checks are the same whatever
address it listens on, and tests send traffic to 127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from recoserve.client import AsyncRecoClient, CredentialError, RecoClient
from recoserve.contract import API_KEY_HEADER, GRPC_API_KEY_METADATA
from recoserve.server.triton import TritonError, TritonServer, start_triton
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
    for api_key in (None, "wrong-key"):
        with (
            RecoClient(checked.grpc_url, api_key=api_key, retries=3) as client,
            pytest.raises(CredentialError, match="credential"),
        ):
            client.reconstruct(event)
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
