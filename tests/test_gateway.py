"""The REST gateway over real HTTP, in front of a real embedded Triton; the event display in
headless Chromium; schemathesis against the OpenAPI schema."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import numpy as np
import pyarrow as pa
import pytest
import schemathesis
from gateway_process import start_gateway
from hypothesis import HealthCheck, given, settings

from recoserve.client import RecoClient
from recoserve.server import bodies
from recoserve.server.triton import TritonServer, free_ports
from recoserve.sim.classes import pf_event

FRESH_SEED = 931
JWT_SECRET = "test-secret-for-bearer-tokens-0123456789"


@pytest.fixture(scope="module")
def gateway(server: TritonServer) -> Iterator[str]:
    process, base = start_gateway(server.grpc_url)
    yield base
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def secured(server: TritonServer) -> Iterator[str]:
    process, base = start_gateway(
        server.grpc_url, "--api-key", "k-123456", "--jwt-secret", JWT_SECRET
    )
    yield base
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def event() -> tuple[np.ndarray, np.ndarray]:
    e = pf_event(FRESH_SEED, 0)
    return e.hits.features(), e.tracks.features()


def json_body(hits: np.ndarray, tracks: np.ndarray) -> dict[str, object]:
    return {"hits": hits.tolist(), "tracks": tracks.tolist()}


def test_health_readiness_and_metrics(gateway: str) -> None:
    assert httpx.get(f"{gateway}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    text = httpx.get(f"{gateway}/metrics").text
    assert 'recoserve_gateway_requests_total{endpoint="/readyz",status="200"}' in text
    assert "recoserve_gateway_latency_seconds_bucket" in text


def test_readyz_reflects_triton(tmp_path: Path) -> None:
    process, base = start_gateway(f"127.0.0.1:{free_ports(1)[0]}")  # nobody there
    try:
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 503
        assert ready.json()["servers"] == [
            {"triton": 1, "models_ready": {"hgcal_clustering": False, "event_reco": False}}
        ]
        assert "127.0.0.1" not in ready.text  # no internal address
        assert httpx.get(f"{base}/healthz").status_code == 200
    finally:
        process.terminate()


def test_a_fault_of_the_service_is_a_counted_500_without_details() -> None:
    """A misconfigured gateway (a Triton address without a port) fails on the first request:
    that is the service's fault, so a 500, with no internals in the body, counted by route."""
    process, base = start_gateway("127.0.0.1")
    try:
        failed = httpx.post(f"{base}/v1/cluster", json={"hits": [GOOD_HIT]}, timeout=30)
        assert failed.status_code == 500 and failed.json() == {"detail": "internal error"}
        metrics = httpx.get(f"{base}/metrics").text
        assert (
            'recoserve_gateway_requests_total{endpoint="/v1/cluster",status="500"} 1.0' in metrics
        )
    finally:
        process.terminate()
        process.wait(30)


def test_json_and_binary_bodies_equal_the_client_library(
    gateway: str, server: TritonServer, event: tuple[np.ndarray, np.ndarray]
) -> None:
    hits, tracks = event
    with RecoClient(server.grpc_url, shared_memory="never") as client:
        expected = client.reconstruct((hits, tracks))
        expected_clusters = client.cluster(hits)
    as_json = httpx.post(f"{gateway}/v1/reconstruct", json=json_body(hits, tracks), timeout=60)
    assert as_json.status_code == 200
    payload = as_json.json()
    assert payload["hit_cluster"] == expected.hit_cluster.tolist()
    assert [c["pdg"] for c in payload["candidates"]] == expected.candidates["pdg"].tolist()
    np.testing.assert_allclose(
        [c["energy"] for c in payload["candidates"]], expected.candidates["energy"], rtol=1e-6
    )
    buffer = io.BytesIO()
    np.savez(buffer, hits=hits, tracks=tracks)
    as_npz = httpx.post(
        f"{gateway}/v1/reconstruct",
        content=buffer.getvalue(),
        headers={"content-type": bodies.NPZ, "accept": bodies.NPZ},
        timeout=60,
    )
    assert as_npz.status_code == 200 and as_npz.headers["content-type"] == bodies.NPZ
    with np.load(io.BytesIO(as_npz.content)) as arrays:
        np.testing.assert_array_equal(arrays["hit_cluster"], expected.hit_cluster)
        np.testing.assert_array_equal(arrays["candidates"], expected.candidates)
    stream = io.BytesIO()
    hit_batch = pa.record_batch({n: hits[:, i] for i, n in enumerate(bodies.HIT_FEATURES)})
    track_batch = pa.record_batch({n: tracks[:, i] for i, n in enumerate(bodies.TRACK_FEATURES)})
    with pa.ipc.new_stream(stream, hit_batch.schema) as writer:
        writer.write_batch(hit_batch)
    with pa.ipc.new_stream(stream, track_batch.schema) as writer:
        writer.write_batch(track_batch)
    as_arrow = httpx.post(
        f"{gateway}/v1/reconstruct",
        content=stream.getvalue(),
        headers={"content-type": bodies.ARROW, "accept": bodies.ARROW},
        timeout=60,
    )
    assert as_arrow.status_code == 200, as_arrow.text
    assignment, clusters, candidates = bodies.read_arrow_result(as_arrow.content)
    np.testing.assert_array_equal(assignment.column("hit_cluster").to_numpy(), expected.hit_cluster)
    np.testing.assert_array_equal(candidates.column("pdg").to_numpy(), expected.candidates["pdg"])
    assert clusters.num_rows == len(expected.clusters)
    only = httpx.post(f"{gateway}/v1/cluster", json={"hits": hits.tolist()}, timeout=60)
    assert only.json()["hit_cluster"] == expected_clusters.hit_cluster.tolist()
    assert "candidates" not in only.json()


def test_batch_endpoint(gateway: str, event: tuple[np.ndarray, np.ndarray]) -> None:
    hits, tracks = event
    other = pf_event(FRESH_SEED, 1)
    body = {
        "events": [
            json_body(hits, tracks),
            json_body(other.hits.features(), other.tracks.features()),
        ]
    }
    response = httpx.post(f"{gateway}/v1/reconstruct/batch", json=body, timeout=60)
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 2 and len(results[1]["hit_cluster"]) == len(other.hits)
    single = httpx.post(f"{gateway}/v1/reconstruct", json=json_body(hits, tracks), timeout=60)
    assert results[0]["hit_cluster"] == single.json()["hit_cluster"]


@pytest.mark.parametrize(
    ("page", "assets"),
    [
        ("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")),
        ("/redoc", ("redoc.standalone.js",)),
    ],
)
def test_api_docs_pages_load_nothing_from_the_internet(
    gateway: str, page: str, assets: tuple[str, ...]
) -> None:
    html = httpx.get(f"{gateway}{page}", timeout=10)
    assert html.status_code == 200
    assert "https://" not in html.text and "http://" not in html.text  # no CDN, no fonts
    for asset in assets:
        assert f"/static/vendor/{asset}" in html.text
        served = httpx.get(f"{gateway}/static/vendor/{asset}", timeout=10)
        assert served.status_code == 200 and len(served.content) > 100_000


def test_one_bad_event_in_a_batch_fails_alone(
    gateway: str, event: tuple[np.ndarray, np.ndarray]
) -> None:
    """A batch of a valid event, an event with a negative energy and an event over the hit
    limit: 200, the valid one answered as if sent alone, each bad one with its own error."""
    hits, tracks = event
    negative = hits.copy()
    negative[3, 3] = -1.0
    too_many = np.tile(hits[:1], (500_001, 1))
    body = {
        "events": [
            json_body(negative, tracks),
            json_body(hits, tracks),
            {"hits": too_many.tolist()},
        ]
    }
    response = httpx.post(f"{gateway}/v1/reconstruct/batch", json=body, timeout=120)
    assert response.status_code == 200
    answer = response.json()
    assert answer["errors"] == 2
    first, second, third = answer["results"]
    assert first["error"]["status"] == 422
    assert "events[0]" in first["error"]["detail"] and "negative" in first["error"]["detail"]
    assert third["error"]["status"] == 413 and "events[2]" in third["error"]["detail"]
    single = httpx.post(f"{gateway}/v1/reconstruct", json=json_body(hits, tracks), timeout=60)
    assert second["hit_cluster"] == single.json()["hit_cluster"]
    pdg = [c["pdg"] for c in single.json()["candidates"]]
    assert [c["pdg"] for c in second["candidates"]] == pdg


GOOD_HIT = [10.0, 20.0, 330.0, 0.5, 11.0]
BAD_INPUTS: dict[str, tuple[str, str | bytes, dict[str, str], int, str]] = {
    # name: (path, body, headers, status, message fragment)
    "malformed JSON": ("/v1/reconstruct", b'{"hits": [', {}, 400, "malformed JSON"),
    "not JSON at all": ("/v1/reconstruct", b"hello", {}, 400, "malformed JSON"),
    "empty body": ("/v1/reconstruct", b"", {}, 400, "empty body"),
    "body is a list": ("/v1/reconstruct", "[]", {}, 422, "JSON object"),
    "missing hits": ("/v1/reconstruct", "{}", {}, 422, "missing field 'hits'"),
    "unknown field": ("/v1/reconstruct", '{"hits": [], "energy": 1}', {}, 422, "unknown fields"),
    "hits not a list": ("/v1/reconstruct", '{"hits": 5}', {}, 422, "'hits' must be a list"),
    "short hit row": ("/v1/reconstruct", '{"hits": [[1, 2, 3]]}', {}, 422, "'hits[0]'"),
    "string in hit": ("/v1/reconstruct", '{"hits": [[1, 2, 330, 1, "a"]]}', {}, 422, "hits[0][4]"),
    "boolean in hit": (
        "/v1/reconstruct",
        '{"hits": [[1, 2, 330, true, 1]]}',
        {},
        422,
        "hits[0][3]",
    ),
    "null in hit": ("/v1/reconstruct", '{"hits": [[1, 2, 330, null, 1]]}', {}, 422, "hits[0][3]"),
    "NaN": ("/v1/reconstruct", '{"hits": [[1, 2, 330, NaN, 1]]}', {}, 422, "NaN"),
    "Infinity": ("/v1/reconstruct", '{"hits": [[1, 2, 330, Infinity, 1]]}', {}, 422, "Infinity"),
    "huge number": ("/v1/reconstruct", '{"hits": [[1, 2, 330, 1e400, 1]]}', {}, 422, "finite"),
    "negative energy": ("/v1/reconstruct", '{"hits": [[1, 2, 330, -1, 1]]}', {}, 422, "negative"),
    "short track row": (
        "/v1/reconstruct",
        '{"hits": [], "tracks": [[1, 2]]}',
        {},
        422,
        "'tracks[0]'",
    ),
    "wrong content type": (
        "/v1/reconstruct",
        "hits",
        {"content-type": "text/plain"},
        415,
        "unsupported Content-Type",
    ),
    "bad npz": ("/v1/reconstruct", b"PK-not-a-zip", {"content-type": bodies.NPZ}, 400, "npz"),
    "bad arrow": ("/v1/reconstruct", b"nope", {"content-type": bodies.ARROW}, 400, "Arrow"),
    "unsupported accept": (
        "/v1/reconstruct",
        '{"hits": []}',
        {"accept": "text/csv"},
        406,
        "cannot answer",
    ),
    "batch without events": ("/v1/reconstruct/batch", '{"hits": []}', {}, 422, "events"),
    "empty batch": ("/v1/reconstruct/batch", '{"events": []}', {}, 422, "1 to 64"),
    "bad event in batch": (
        "/v1/reconstruct/batch",
        '{"events": [{"hits": [[1]]}]}',
        {},
        422,
        "events[0]",
    ),
    "too many hits": (
        "/v1/cluster",
        json.dumps({"hits": [GOOD_HIT] * 500_001}),
        {},
        413,
        "limit 500000",
    ),
    "binary batch": ("/v1/reconstruct/batch", b"x", {"content-type": bodies.NPZ}, 415, "JSON"),
    "deeply nested JSON": (
        "/v1/reconstruct",
        '{"hits": ' + "[" * 100_000 + "]" * 100_000 + "}",
        {},
        400,
        "nested too deeply",
    ),
    "400-digit integer": (
        "/v1/reconstruct",
        '{"hits": [[1, 2, 330, 1' + "0" * 400 + ", 1]]}",
        {},
        422,
        "not finite",
    ),
    "beyond float32": ("/v1/reconstruct", '{"hits": [[1, 2, 330, 1e39, 1]]}', {}, 422, "float32"),
}


def _arrow(table: pa.Table, compression: str | None = None) -> bytes:
    out = io.BytesIO()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(out, table.schema, options=options) as writer:
        writer.write_table(table)
    return out.getvalue()


def _hit_columns(rows: int) -> dict[str, np.ndarray]:
    return {name: np.zeros(rows, np.float32) for name in ("x", "y", "z", "energy", "time")}


def _binary_bombs() -> dict[str, tuple[bytes, str, int, str]]:
    """name: (body, content type, status, message fragment): small bodies that would decode to
    far more than the limits allow, and Arrow tables that once gave a 500."""
    columns = _hit_columns(1)
    duplicated = pa.Table.from_arrays(
        [pa.array(v) for v in columns.values()] + [pa.array(np.zeros(1, np.float32))],
        names=[*columns, "x"],
    )
    union = pa.UnionArray.from_sparse(
        pa.array([0], type=pa.int8()), [pa.array([1.0]), pa.array(["a"])]
    )
    unioned = pa.table({**{k: v for k, v in columns.items() if k != "x"}, "x": union})
    inflating = io.BytesIO()
    np.savez_compressed(inflating, hits=np.zeros((1, 5), np.float32),
                        junk=np.zeros(300 * 1024 * 1024, np.uint8))  # fmt: skip
    return {
        "zstd Arrow with 3 M rows": (
            _arrow(pa.table(_hit_columns(3_000_000)), "zstd"),
            bodies.ARROW,
            413,
            "rows > limit",
        ),
        "npz inflating to 300 MB": (inflating.getvalue(), bodies.NPZ, 413, "inflates to"),
        "Arrow column twice": (_arrow(duplicated), bodies.ARROW, 422, "more than once"),
        "Arrow union column": (_arrow(unioned), bodies.ARROW, 422, "must be numeric"),
    }


def test_bombs_and_odd_arrow_tables_get_a_named_4xx(gateway: str) -> None:
    for name, (body, kind, status, fragment) in _binary_bombs().items():
        assert len(body) < 1_000_000, name  # small on the wire
        response = httpx.post(
            f"{gateway}/v1/reconstruct", content=body, headers={"content-type": kind}, timeout=60
        )
        assert response.status_code == status, (name, response.text)
        assert fragment in response.json()["detail"], name
        assert httpx.get(f"{gateway}/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_get_a_named_4xx_and_the_gateway_keeps_serving(gateway: str, case: str) -> None:
    path, body, headers, status, fragment = BAD_INPUTS[case]
    response = httpx.post(
        f"{gateway}{path}",
        content=body,
        headers={"content-type": "application/json", **headers},
        timeout=60,
    )
    assert response.status_code == status, response.text
    assert fragment in response.json()["detail"]
    ok = httpx.post(f"{gateway}/v1/cluster", json={"hits": [GOOD_HIT]}, timeout=60)
    assert ok.status_code == 200


def test_oversized_body_is_refused(gateway: str) -> None:
    response = httpx.post(
        f"{gateway}/v1/cluster",
        content=b"{" + b" " * (64 * 1024 * 1024 + 10) + b"}",
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 413 and "exceeds" in response.json()["detail"]


def test_api_keys_bearer_tokens_and_rate_limit(secured: str) -> None:
    body = {"hits": [GOOD_HIT]}
    assert httpx.get(f"{secured}/healthz").status_code == 200  # health stays open
    missing = httpx.post(f"{secured}/v1/cluster", json=body)
    assert missing.status_code == 401 and "authentication required" in missing.json()["detail"]
    wrong = httpx.post(f"{secured}/v1/cluster", json=body, headers={"x-api-key": "nope"})
    assert wrong.status_code == 401 and "invalid API key" in wrong.json()["detail"]
    good = httpx.post(f"{secured}/v1/cluster", json=body, headers={"x-api-key": "k-123456"})
    assert good.status_code == 200
    expires = int(time.time()) + 600
    token = jwt.encode({"sub": "alice", "exp": expires}, JWT_SECRET, algorithm="HS256")
    bearer = httpx.post(f"{secured}/v1/cluster", json=body,
                        headers={"authorization": f"Bearer {token}"})  # fmt: skip
    assert bearer.status_code == 200
    forged = jwt.encode({"sub": "mallory", "exp": expires}, "another-secret-0123456789-abcdef",
                        algorithm="HS256")  # fmt: skip
    refused = httpx.post(f"{secured}/v1/cluster", json=body,
                         headers={"authorization": f"Bearer {forged}"})  # fmt: skip
    assert refused.status_code == 401 and "invalid bearer token" in refused.json()["detail"]
    forever = jwt.encode({"sub": "alice"}, JWT_SECRET, algorithm="HS256")  # no exp
    no_exp = httpx.post(f"{secured}/v1/cluster", json=body,
                        headers={"authorization": f"Bearer {forever}"})  # fmt: skip
    assert no_exp.status_code == 401 and '"exp"' in no_exp.json()["detail"]
    simulate = httpx.post(f"{secured}/v1/simulate?particles=2")  # needs a credential too
    assert simulate.status_code == 401
    schemes = httpx.get(f"{secured}/openapi.json").json()["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"apiKey", "http"}


def test_an_expired_bearer_token_is_refused(secured: str) -> None:
    expired = jwt.encode({"sub": "alice", "exp": int(time.time()) - 60}, JWT_SECRET,
                         algorithm="HS256")  # fmt: skip
    refused = httpx.post(f"{secured}/v1/cluster", json={"hits": [GOOD_HIT]},
                         headers={"authorization": f"Bearer {expired}"})  # fmt: skip
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]


def test_rate_limit_per_key(server: TritonServer) -> None:
    process, base = start_gateway(
        server.grpc_url, "--api-key", "first-key", "--api-key", "first-kez", "--rate-limit", "3"
    )
    try:
        body = {"hits": [GOOD_HIT]}
        codes = [
            httpx.post(
                f"{base}/v1/cluster", json=body, headers={"x-api-key": "first-key"}
            ).status_code
            for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429]
        limited = httpx.post(f"{base}/v1/cluster", json=body, headers={"x-api-key": "first-key"})
        assert 1 <= int(limited.headers["retry-after"]) <= 61
        other = httpx.post(f"{base}/v1/cluster", json=body, headers={"x-api-key": "first-kez"})
        assert other.status_code == 200  # the limit is per key (keys sharing a prefix too)
        assert httpx.get(f"{base}/healthz").status_code == 200
        guesses = [
            httpx.post(f"{base}/v1/cluster", json=body, headers={"x-api-key": f"guess-{i}"})
            for i in range(32)
        ]
        assert [g.status_code for g in guesses[:30]] == [401] * 30
        assert guesses[31].status_code == 429 and "failed authentications" in guesses[31].text
    finally:
        process.terminate()


def test_triton_admin_apis_are_not_reachable(gateway: str) -> None:
    for path in (
        "/v2/repository/models/event_reco/unload",
        "/v2/systemsharedmemory/register",
        "/v2/logging",
        "/v2/repository/index",
    ):
        assert httpx.post(f"{gateway}{path}", json={}).status_code == 404


def test_openapi_fuzzing_gives_no_server_errors(gateway: str) -> None:
    """schemathesis generates requests from the OpenAPI schema (valid and invalid bodies and
    parameters) for every operation; none may produce a 5xx, and every answer conforms to the
    schema (no schema-valid request refused, no undocumented status or content type)."""
    schema = schemathesis.openapi.from_url(f"{gateway}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/cluster", "/v1/reconstruct", "/healthz"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=gateway, timeout=60)
            assert response.status_code < 500, (case.path, case.body, response.text[:300])
            case.validate_response(response)  # status, content type and body as documented

        check()


def test_event_display_in_headless_chromium(gateway: str, tmp_path: Path) -> None:
    assert shutil.which("chromium"), "install Debian's chromium: make install-browser"
    url = f"{gateway}/?autoload=1"
    common = ["chromium", "--headless", "--no-sandbox", "--disable-gpu-sandbox",
              "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
              "--window-size=1400,1000", "--virtual-time-budget=30000"]  # fmt: skip
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    assert 'data-state="drawn"' in dom.stdout, dom.stdout[-2000:]
    assert "<td>" in dom.stdout  # the candidates table is filled
    shot = tmp_path / "display.png"
    subprocess.run([*common, f"--screenshot={shot}", url], capture_output=True, timeout=180)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] >= 900 and pixels.shape[1] >= 1300
    view = pixels[60:480, 950:1400, :3]  # the x-y projection: coloured hits on black
    coloured = (view.max(axis=2) - view.min(axis=2)) > 0.2
    assert coloured.sum() > 200
    if os.environ.get("RECOSERVE_UPDATE_DOCS_IMAGES"):  # `make docs-plots`; tests never do
        docs = Path(__file__).parents[1] / "docs" / "img" / "event_display_browser.png"
        shutil.copy(shot, docs)
