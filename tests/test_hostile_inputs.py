"""What a careful attacker sends the REST gateway: over a hundred request classes, each answered
with its 4xx status and a message that names the problem, while /healthz keeps answering, and
the gateway's resident memory grows by less than 200 MB over the whole suite.

The gateway here fronts no Triton (nothing listens at its address): everything below must be
refused before inference, so a 503 would mean a hostile request got through the checks.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import psutil
import pyarrow as pa
import pytest
from gateway_process import running_gateway

from recoserve.contract import HIT_FEATURES, TRACK_FEATURES
from recoserve.server import bodies

GOOD_HIT = [10.0, 20.0, 330.0, 0.5, 11.0]
GOOD_TRACK = [5.0, 2.0, 0.1, 1.0, 20.0, 10.0, 20.0, 320.0, 10.0]
MEMORY_GROWTH_LIMIT_MB = 200


@dataclass(frozen=True)
class Hostile:
    body: bytes
    content_type: str = bodies.JSON
    status: int = 422
    fragment: str = ""
    path: str = "/v1/reconstruct"
    headers: tuple[tuple[str, str], ...] = ()


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def _npz(**arrays: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)  # type: ignore[arg-type]
    return out.getvalue()


def _arrow(table: pa.Table, compression: str | None = None) -> bytes:
    out = io.BytesIO()
    with pa.ipc.new_stream(
        out, table.schema, options=pa.ipc.IpcWriteOptions(compression=compression)
    ) as writer:
        writer.write_table(table)
    return out.getvalue()


def _hits_table(rows: int = 1, **override: object) -> pa.Table:
    columns: dict[str, object] = {
        n: np.full(rows, v, np.float32) for n, v in zip(HIT_FEATURES, GOOD_HIT, strict=True)
    }
    columns.update(override)
    return pa.table(columns)


def cases() -> dict[str, Hostile]:
    found: dict[str, Hostile] = {}
    # 1. every hit and track column with every kind of bad JSON value
    bad_values = {
        "NaN": ("NaN", 422, "NaN"),
        "Infinity": ("Infinity", 422, "Infinity"),
        "-Infinity": ("-Infinity", 422, "Infinity"),
        "1e39": ("1e39", 422, "float32"),
        "1e999": ("1e999", 422, "not finite"),
        "string": ('"a"', 422, "must be a number"),
        "null": ("null", 422, "must be a number"),
        "true": ("true", 422, "must be a number"),
        "list": ("[]", 422, "must be a number"),
        "object": ("{}", 422, "must be a number"),
    }
    for j, column in enumerate(HIT_FEATURES):
        for label, (token, status, fragment) in bad_values.items():
            row = [json.dumps(v) for v in GOOD_HIT]
            row[j] = token
            body = f'{{"hits": [[{", ".join(row)}]]}}'.encode()
            found[f"hits.{column} = {label}"] = Hostile(body, status=status, fragment=fragment)
    for j, column in enumerate(TRACK_FEATURES):
        for label in ("NaN", "1e39", "string"):
            token, status, fragment = bad_values[label]
            row = [json.dumps(v) for v in GOOD_TRACK]
            row[j] = token
            body = f'{{"hits": [{json.dumps(GOOD_HIT)}], "tracks": [[{", ".join(row)}]]}}'
            found[f"tracks.{column} = {label}"] = Hostile(
                body.encode(), status=status, fragment=fragment
            )
    # values inside float32 but far outside any detector: refused by the contract's limits
    for j, column in enumerate(HIT_FEATURES):
        row = list(GOOD_HIT)
        row[j] = 1e7
        found[f"hits.{column} = 1e7"] = Hostile(_json({"hits": [row]}), fragment="beyond the limit")
    # 2. the shape of a JSON body
    shapes = {
        "a list": ("[]", 422, "JSON object"),
        "a string": ('"hits"', 422, "JSON object"),
        "a number": ("5", 422, "JSON object"),
        "null": ("null", 422, "JSON object"),
        "no hits": ("{}", 422, "missing field 'hits'"),
        "an unknown field": ('{"hits": [], "energy": 1}', 422, "unknown fields"),
        "hits an object": ('{"hits": {}}', 422, "must be a list"),
        "hits a string": ('{"hits": "x"}', 422, "must be a list"),
        "a short hit row": ('{"hits": [[1, 2, 3]]}', 422, "'hits[0]'"),
        "a long hit row": ('{"hits": [[1, 2, 3, 4, 5, 6]]}', 422, "'hits[0]'"),
        "a hit row of rows": ('{"hits": [[[1], 2, 3, 4, 5]]}', 422, "hits[0][0]"),
        "a short track row": ('{"hits": [], "tracks": [[1, 2]]}', 422, "'tracks[0]'"),
        "tracks null explicitly": ('{"hits": [], "tracks": 7}', 422, "must be a list"),
        "negative energy": ('{"hits": [[1, 2, 330, -1, 1]]}', 422, "negative"),
        "malformed": ('{"hits": [', 400, "malformed JSON"),
        "trailing garbage": ('{"hits": []} x', 400, "malformed JSON"),
        "nested 100k deep": ('{"hits": ' + "[" * 100_000 + "]" * 100_000 + "}", 400,
                             "nested too deeply"),
        "a 400-digit integer": ('{"hits": [[1, 2, 330, 1' + "0" * 400 + ", 1]]}", 422,
                                "not finite"),
    }  # fmt: skip
    for label, (text, status, fragment) in shapes.items():
        found[f"JSON body is {label}"] = Hostile(text.encode(), status=status, fragment=fragment)
    found["invalid UTF-8"] = Hostile(b'{"hits": "\xff\xfe"}', status=400, fragment="malformed")
    # JSON may come as UTF-16 (RFC 8259 parsers detect it): the same checks apply
    found["UTF-16 body with a bad row"] = Hostile(
        '{"hits": [[1, 2, 3]]}'.encode("utf-16"), fragment="'hits[0]'"
    )
    found["empty body"] = Hostile(b"", status=400, fragment="empty body")
    found["too many hits"] = Hostile(
        _json({"hits": [GOOD_HIT] * 500_001}), status=413, fragment="limit 500000",
        path="/v1/cluster",
    )  # fmt: skip
    found["body over 64 MB"] = Hostile(
        b"{" + b" " * (64 * 1024 * 1024 + 10) + b"}", status=413, fragment="exceeds"
    )
    # 3. content types and Accept
    for kind in (
        "text/plain",
        "application/xml",
        "multipart/form-data",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
        "image/png",
    ):
        found[f"Content-Type {kind}"] = Hostile(
            _json({"hits": [GOOD_HIT]}), content_type=kind, status=415, fragment="Content-Type"
        )
    for accept in ("text/csv", "image/png", "application/xml"):
        found[f"Accept {accept}"] = Hostile(
            _json({"hits": [GOOD_HIT]}), status=406, fragment="cannot answer",
            headers=(("accept", accept),), path="/v1/cluster",
        )  # fmt: skip
    # 4. npz bodies
    good = np.array([GOOD_HIT], np.float32)
    inflating = io.BytesIO()
    np.savez_compressed(inflating, hits=good, junk=np.zeros(300 * 1024 * 1024, np.uint8))
    npz_cases = {
        "not a zip": (b"PK-no", 400, "npz"),
        "a zip without hits": (_npz(tracks=np.zeros((0, 9), np.float32)), 422, "no array 'hits'"),
        "hits of strings": (_npz(hits=np.array([["a"] * 5])), 422, "float32 or float64"),
        "hits of ints": (_npz(hits=np.ones((1, 5), np.int64)), 422, "float32 or float64"),
        "hits [N, 4]": (_npz(hits=np.ones((1, 4), np.float32)), 422, "shape [N, 5]"),
        "hits 3-D": (_npz(hits=np.ones((1, 1, 5), np.float32)), 422, "shape [N, 5]"),
        "hits 1-D": (_npz(hits=np.ones(5, np.float32)), 422, "shape [N, 5]"),
        "tracks [N, 8]": (_npz(hits=good, tracks=np.ones((1, 8), np.float32)), 422,
                          "shape [N, 9]"),
        "NaN in hits": (_npz(hits=np.full((1, 5), np.nan, np.float32)), 422, "non-finite"),
        "negative energy": (_npz(hits=good * np.array([1, 1, 1, -1, 1], np.float32)), 422,
                            "negative"),
        "a pickled object array": (_npz(hits=np.array([{"a": 1}], dtype=object)), 400,
                                   "unreadable npz"),
        "300 MB when inflated": (inflating.getvalue(), 413, "inflates to"),
    }  # fmt: skip
    for label, (body, status, fragment) in npz_cases.items():
        found[f"npz: {label}"] = Hostile(body, bodies.NPZ, status, fragment)
    # 5. Arrow bodies
    duplicated = pa.Table.from_arrays(
        [pa.array(np.zeros(1, np.float32)) for _ in range(6)], names=[*HIT_FEATURES, "x"]
    )
    arrow_cases = {
        "not Arrow": (b"nope", 400, "Arrow"),
        "a missing column": (_arrow(_hits_table().drop_columns(["time"])), 422, "lacks columns"),
        "a string column": (_arrow(_hits_table(x=pa.array(["a"]))), 422, "must be numeric"),
        "a column twice": (_arrow(duplicated), 422, "more than once"),
        "nulls": (_arrow(_hits_table(x=pa.array([None], pa.float32()))), 422, "non-finite"),
        "NaN": (_arrow(_hits_table(x=np.array([np.nan], np.float32))), 422, "non-finite"),
        "negative energy": (_arrow(_hits_table(energy=np.array([-1], np.float32))), 422,
                            "negative"),
        "3 M rows, zstd": (_arrow(_hits_table(3_000_000), "zstd"), 413, "rows > limit"),
        "a truncated stream": (_arrow(_hits_table(100))[:-50], 400, "Arrow"),
    }  # fmt: skip
    for label, (body, status, fragment) in arrow_cases.items():
        found[f"Arrow: {label}"] = Hostile(body, bodies.ARROW, status, fragment)
    # 6. batches
    batch = "/v1/reconstruct/batch"
    found["batch: no events"] = Hostile(_json({"events": []}), fragment="1 to 64", path=batch)
    found["batch: 65 events"] = Hostile(
        _json({"events": [{"hits": [GOOD_HIT]}] * 65}), fragment="1 to 64", path=batch
    )
    found["batch: events not a list"] = Hostile(_json({"events": {}}), fragment="events",
                                                path=batch)  # fmt: skip
    found["batch: an event not an object"] = Hostile(
        _json({"events": [5]}), fragment="events[0] must be a JSON object", path=batch
    )
    found["batch: binary"] = Hostile(_npz(hits=good), bodies.NPZ, 415, "JSON", path=batch)
    # 7. the simulate endpoint's parameters
    for query, fragment in (("particles=-1", "particles"), ("particles=100000", "particles"),
                            ("seed=-1", "seed"), ("seed=99999999999", "seed"),
                            ("particles=abc", "particles"), ("jets=maybe", "jets")):  # fmt: skip
        found[f"simulate?{query}"] = Hostile(b"", path=f"/v1/simulate?{query}",
                                             fragment=fragment)  # fmt: skip
    return found


CASES = cases()


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[str, psutil.Process, list[int]]]:
    """A gateway in front of no Triton; (base URL, its process, its RSS at the start)."""
    with running_gateway("127.0.0.1:9") as (process, base):
        handle = psutil.Process(process.pid)
        yield base, handle, [handle.memory_info().rss]


def test_there_are_over_a_hundred_request_classes() -> None:
    assert len(CASES) >= 100


@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_request_gets_its_4xx(
    gateway: tuple[str, psutil.Process, list[int]], name: str
) -> None:
    base, _, _ = gateway
    case = CASES[name]
    healthy: list[int] = []

    def probe() -> None:  # the gateway answers /healthz while it refuses the request
        time.sleep(0.05)
        healthy.append(httpx.get(f"{base}/healthz", timeout=10).status_code)

    prober = threading.Thread(target=probe)
    prober.start()
    response = httpx.post(
        f"{base}{case.path}",
        content=case.body,
        headers={"content-type": case.content_type, **dict(case.headers)},
        timeout=120,
    )
    prober.join()
    assert response.status_code == case.status, response.text[:500]
    assert case.fragment in response.json()["detail"], response.text[:500]
    assert healthy == [200]


def test_huge_headers_are_refused(gateway: tuple[str, psutil.Process, list[int]]) -> None:
    """Headers beyond 64 KiB: a 4xx, or the connection closed while they still arrive (which
    one depends on how far the client got); never served, and the gateway goes on."""
    base, _, _ = gateway
    try:
        response = httpx.post(
            f"{base}/v1/cluster", json={"hits": [GOOD_HIT]}, headers={"x-junk": "a" * 200_000},
            timeout=30,
        )  # fmt: skip
        assert 400 <= response.status_code < 500
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
        pass  # cut off
    assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200


def test_a_batch_mixing_valid_and_invalid_events_answers_each(
    gateway: tuple[str, psutil.Process, list[int]],
) -> None:
    base, _, _ = gateway
    body = {"events": [{"hits": [GOOD_HIT]}, {"hits": [[1, 2, 330, -1, 1]]}]}
    answer = httpx.post(f"{base}/v1/reconstruct/batch", json=body, timeout=60).json()
    first, second = answer["results"]
    assert first["error"]["status"] == 503  # valid, but no Triton here: the service's fault
    assert second["error"]["status"] == 422 and "negative" in second["error"]["detail"]


def test_memory_stays_bounded_over_the_suite(
    gateway: tuple[str, psutil.Process, list[int]],
) -> None:
    """Last in this module: the gateway's RSS after every request above."""
    _, process, start = gateway
    grown = (process.memory_info().rss - start[0]) / 2**20
    assert grown < MEMORY_GROWTH_LIMIT_MB, f"{grown:.0f} MB"
