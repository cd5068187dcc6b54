"""The client library and `recoserve reconstruct`, against real embedded Tritons."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from recoserve.client import (
    AsyncRecoClient,
    ModelMismatch,
    RecoClient,
    RecoError,
    RecoResult,
    RejectedInput,
)
from recoserve.contract import InvalidInput
from recoserve.events.parquet import write_events
from recoserve.inprocess import ClusteringPipeline, EventRecoPipeline
from recoserve.server.triton import TritonServer, free_ports, start_triton
from recoserve.sim.classes import pf_event
from recoserve.sim.particles import GunConfig
from recoserve.sim.simulator import SimConfig, Simulator

FRESH_SEED = 921


@pytest.fixture(scope="module")
def events() -> list:
    return [pf_event(FRESH_SEED, i) for i in range(24)]


@pytest.fixture(scope="module")
def client(server: TritonServer):
    with RecoClient(server.grpc_url, shared_memory="never") as plain:
        yield plain


def same(a: RecoResult, b: RecoResult, exact: bool = True) -> None:
    """Equal results: identical cluster indices and candidate identities; floats identical, or
    (``exact=False``, when the server batched one of them with other events) to 1e-5 or float32
    round-off."""
    np.testing.assert_array_equal(a.hit_cluster, b.hit_cluster)
    for x, y in ((a.clusters, b.clusters), (a.candidates, b.candidates)):
        assert x.dtype == y.dtype and len(x) == len(y)
        for name in x.dtype.names:
            if exact or x.dtype[name].kind in "iu":
                np.testing.assert_array_equal(x[name], y[name], err_msg=name)
            else:
                np.testing.assert_allclose(x[name], y[name], rtol=1e-6, atol=1e-5, err_msg=name)


def test_typed_results_equal_the_in_process_chain(
    client: RecoClient, repository: Path, events: list
) -> None:
    clustering = ClusteringPipeline(
        backend="onnx", exported=repository / "gravnet_oc" / "1" / "model.onnx"
    )
    chain = EventRecoPipeline(
        clustering, backend="onnx", exported=repository / "mlpf" / "1" / "model.onnx"
    )
    event = events[0]
    result = client.reconstruct(event)
    clusters, candidates = chain.reconstruct(event.hits.features(), event.tracks.features())
    np.testing.assert_array_equal(result.hit_cluster, clusters.hit_cluster)
    np.testing.assert_array_equal(result.candidates["pdg"], candidates["pdg"])
    np.testing.assert_allclose(result.candidates["energy"], candidates["energy"], atol=1e-5)
    np.testing.assert_allclose(result.clusters["energy"], clusters.energy, atol=1e-5)
    assert list(result.clusters["seed"]) == list(clusters.seed)
    only = client.cluster(event)
    np.testing.assert_array_equal(only.hit_cluster, clusters.hit_cluster)
    assert len(result.to_awkward()) == len(candidates)
    assert list(result.to_pandas()["pdg"]) == list(candidates["pdg"])


def test_shared_memory_equals_plain_grpc(
    server: TritonServer, client: RecoClient, events: list
) -> None:
    with RecoClient(server.grpc_url, shared_memory="always") as shm:
        for event in events[:3]:
            # identical clusters and candidates; floats to float32 round-off: one run in about
            # five gave a 1-ulp difference in a candidate's phi between two identical requests
            # (the server's computation, not the transport; not yet understood)
            same(shm.reconstruct(event), client.reconstruct(event), exact=False)
        assert shm.servers[0].shm.registered() == 1 and not shm.servers[0].shm_failed
        status = shm.servers[0].client.get_system_shared_memory_status(as_json=True)
        assert len(status.get("regions", {})) == 2  # input and output regions registered
    # auto mode on a loopback address uses shared memory too
    with RecoClient(server.grpc_url) as auto:
        auto.reconstruct(events[0])
        assert auto.servers[0].shm.registered() == 1


def test_growing_shared_memory_regions_take_fresh_names_and_release_the_old_ones(
    server: TritonServer, client: RecoClient, events: list
) -> None:
    """An event larger than the regions grows them under new names (the server may still hold
    the old ones just after answering: re-registering a held name is refused), and the server
    ends up with only the grown pair registered; the answers are plain gRPC's."""
    big = Simulator(SimConfig(gun=GunConfig(n_particles=60))).event(FRESH_SEED, 99)  # ~36k hits
    with RecoClient(server.grpc_url, shared_memory="always") as shm:
        shm.reconstruct(events[0])
        pair = shm.servers[0].shm.pairs[0]
        small_tag, small_size = pair.tag, pair.size
        same(shm.reconstruct(big), client.reconstruct(big), exact=False)
        assert pair.size > small_size and pair.tag != small_tag
        assert not shm.servers[0].shm_failed
        # the old pair may still be held just after the answer: each later request retries
        # its release, and within a few requests the server has let it go
        deadline = time.monotonic() + 10.0
        while pair.unreleased and time.monotonic() < deadline:
            time.sleep(0.05)
            shm.reconstruct(events[0])
        assert not pair.unreleased
        status = shm.servers[0].client.get_system_shared_memory_status(as_json=True)
        assert sorted(status.get("regions", {})) == [
            f"recoserve_{pair.tag}_in",
            f"recoserve_{pair.tag}_out",
        ]


def test_threads_sharing_one_client_get_their_own_answers(
    server: TritonServer, client: RecoClient, events: list
) -> None:
    """8 threads on one shared-memory client, 24 events: every answer is the one that event
    gets alone (the regions are lent one request at a time, never shared)."""
    from concurrent.futures import ThreadPoolExecutor

    alone = [client.reconstruct(e) for e in events]
    with RecoClient(server.grpc_url, shared_memory="always") as shared:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(shared.reconstruct, events))
        assert not shared.servers[0].shm_failed
        assert 1 <= shared.servers[0].shm.registered() <= 8
    for answer, expected in zip(answers, alone, strict=True):
        same(answer, expected, exact=False)


def test_concurrent_async_calls_get_their_own_answers(
    server: TritonServer, client: RecoClient, events: list
) -> None:
    alone = [client.reconstruct(e) for e in events[:12]]

    async def main() -> list[RecoResult]:
        async with AsyncRecoClient(server.grpc_url) as aio:
            return await asyncio.gather(*(aio.reconstruct(e) for e in events[:12]))

    for answer, expected in zip(asyncio.run(main()), alone, strict=True):
        same(answer, expected, exact=False)


def test_steady_state_costs_one_rpc_per_event(server: TritonServer, events: list) -> None:
    """Health is learnt from answers: 20 events, one health check (server + model) in all."""
    with RecoClient(server.grpc_url, shared_memory="never") as counted:
        target = counted.servers[0].client
        calls = Counter[str]()
        for name in ("is_server_ready", "is_model_ready", "infer"):
            real = getattr(target, name)

            def spy(*args: object, _real=real, _name=name, **kwargs: object) -> object:
                calls[_name] += 1
                return _real(*args, **kwargs)

            setattr(target, name, spy)
        for event in events[:20]:
            counted.reconstruct(event)
    assert calls["infer"] == 20
    assert calls["is_server_ready"] + calls["is_model_ready"] == 2


def test_an_event_the_server_rejects_is_a_typed_error_and_never_retried(
    server: TritonServer,
) -> None:
    """Triton's INVALID_ARGUMENT (here: hits with 4 columns, which only the server checks when
    the client's own check is bypassed) becomes RejectedInput after one call."""
    with RecoClient(server.grpc_url, shared_memory="never", retries=3) as c:
        target = c.servers[0].client
        calls = Counter[str]()
        real = target.infer

        def spy(*args: object, **kwargs: object) -> object:
            calls["infer"] += 1
            return real(*args, **kwargs)

        target.infer = spy
        bad = {"HITS": np.ones((3, 4), np.float32)}
        with pytest.raises(RejectedInput, match="hgcal_clustering"):
            c._call("hgcal_clustering", bad, ("HIT_CLUSTER", "CLUSTERS"))
    assert calls["infer"] == 1


def test_streaming_maps_every_result_to_its_event(client: RecoClient, events: list) -> None:
    alone = [client.reconstruct(e) for e in events[:8]]
    outcomes = list(client.reconstruct_many(events[:8], in_flight=3))
    assert sorted(o.index for o in outcomes) == list(range(8))
    for outcome in outcomes:
        assert outcome.error is None and outcome.result is not None
        same(outcome.result, alone[outcome.index], exact=False)


def test_stopping_one_of_two_servers_loses_and_duplicates_nothing(
    repository: Path, events: list, tmp_path: Path
) -> None:
    """The server that is answering is killed mid-stream (whichever of the two it is: a slow
    first answer may already have sent the client to the second); the other finishes the job."""
    with (
        start_triton(repository, log_path=tmp_path / "a.log") as a,
        start_triton(repository, log_path=tmp_path / "b.log") as b,
        RecoClient([a.grpc_url, b.grpc_url], shared_memory="never", timeout=30) as two,
    ):
        by_url = {a.grpc_url: a, b.grpc_url: b}
        served_by: list[tuple[int, str]] = []
        killed = ""
        for outcome in two.reconstruct_many(events, in_flight=4):
            assert outcome.result is not None, outcome.error
            served_by.append((outcome.index, outcome.result.server))
            if len(served_by) == 6:
                killed = outcome.result.server
                process = by_url[killed].process
                assert process is not None
                process.kill()  # a crash, not a graceful stop
    indices = [i for i, _ in served_by]
    assert sorted(indices) == list(range(len(events)))  # none lost, none twice
    servers = Counter(s for _, s in served_by)
    (survivor,) = set(by_url) - {killed}
    assert servers[killed] >= 1  # the killed server was answering ...
    assert servers[survivor] >= 1  # ... and after the crash the other one finished the job
    assert servers[killed] + servers[survivor] == len(events)


def test_killing_a_backend_stub_mid_stream_loses_and_duplicates_nothing(
    repository: Path, events: list, tmp_path: Path
) -> None:
    """Fault injection: SIGKILL of one of the first server's event_reco stubs (a Python-backend
    process) while events stream; every event is answered exactly once, without error."""
    import psutil

    with (
        start_triton(repository, log_path=tmp_path / "a.log") as a,
        start_triton(repository, log_path=tmp_path / "b.log") as b,
        RecoClient([a.grpc_url, b.grpc_url], shared_memory="never", timeout=30) as two,
    ):
        assert a.process is not None
        stubs = [
            p
            for p in psutil.Process(a.process.pid).children(recursive=True)
            if "event_reco" in " ".join(p.cmdline())
        ]
        assert stubs, "no event_reco stub found"
        answered: list[int] = []
        for outcome in two.reconstruct_many(events, in_flight=4):
            assert outcome.result is not None, outcome.error
            answered.append(outcome.index)
            if len(answered) == 4:
                stubs[0].kill()
    assert sorted(answered) == list(range(len(events)))  # none lost, none twice


def test_failover_retries_and_errors(server: TritonServer, events: list) -> None:
    dead = f"127.0.0.1:{free_ports(1)[0]}"
    with RecoClient([dead, server.grpc_url], shared_memory="never", backoff=0.01) as c:
        assert c.reconstruct(events[1]).server == server.grpc_url
    with RecoClient([dead], retries=2, backoff=0.01) as nobody, pytest.raises(RecoError):
        nobody.reconstruct(events[1])
    hits = events[1].hits.features()
    hits[3, 4] = np.inf
    with RecoClient(server.grpc_url) as c, pytest.raises(InvalidInput, match="row 3, column 4"):
        c.reconstruct((hits, events[1].tracks.features()))


def test_connection_problems_are_told_apart(server: TritonServer) -> None:
    dead = f"127.0.0.1:{free_ports(1)[0]}"
    for url, fragment in (
        (dead, "nothing listens there"),
        (server.http_url, "an HTTP endpoint, not gRPC"),
    ):
        with RecoClient(url, retries=0) as c, pytest.raises(RecoError, match=fragment):
            c.reconstruct((np.zeros((1, 5), np.float32), np.zeros((0, 9), np.float32)))
    hits64 = np.array([[10.0, 20.0, 330.0, 0.5, 11.0]])  # float64, as numpy makes it
    with RecoClient(server.grpc_url, shared_memory="never") as c:
        assert c.cluster(hits64).hit_cluster.shape == (1,)
        with pytest.raises(InvalidInput, match="non-finite"):
            c.cluster(hits64 * np.array([1, 1, 1, 1e300, 1]))  # beyond float32
    with pytest.raises(ValueError, match="without a scheme"):
        RecoClient(f"grpc://{server.grpc_url}")
    with pytest.raises(ValueError, match="not host:port"):
        RecoClient("127.0.0.1")


def test_a_pinned_model_version(server: TritonServer, events: list) -> None:
    with RecoClient(server.grpc_url, model_version=1, shared_memory="never") as pinned:
        assert pinned.reconstruct(events[0]).candidates.size > 0
    with (
        RecoClient(server.grpc_url, model_version=2, retries=0) as missing,
        pytest.raises(RecoError, match="event_reco is not ready"),
    ):
        missing.reconstruct(events[0])


def test_model_check_and_compression(server: TritonServer, events: list) -> None:
    with RecoClient(server.grpc_url, compression="gzip", shared_memory="never") as c:
        params = c.check_model()
        assert c.reconstruct(events[2]).candidates.size > 0
    expected = {"clustering_sha256": params["clustering_sha256"]}
    with RecoClient(server.grpc_url, expected_checkpoints=expected) as c:
        c.reconstruct(events[2])
    with (
        RecoClient(server.grpc_url, expected_checkpoints={"mlpf_sha256": "0" * 64}) as c,
        pytest.raises(ModelMismatch, match="mlpf_sha256"),
    ):
        c.reconstruct(events[2])


def test_tls(repository: Path, tmp_path: Path, events: list) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    tls = (
        "--grpc-use-ssl=true",
        f"--grpc-server-cert={cert}",
        f"--grpc-server-key={key}",
        f"--grpc-root-cert={cert}",
    )
    with start_triton(repository, log_path=tmp_path / "tls.log", extra_args=tls) as secure:
        with RecoClient(secure.grpc_url.replace("127.0.0.1", "localhost"), ssl=True,
                        root_certificates=cert, shared_memory="never") as c:  # fmt: skip
            assert c.reconstruct(events[3]).candidates.size > 0
        with RecoClient(secure.grpc_url, retries=0) as insecure, pytest.raises(RecoError):
            insecure.reconstruct(events[3])


def test_async_client(server: TritonServer, client: RecoClient, events: list) -> None:
    async def run() -> tuple[RecoResult, list]:
        async with AsyncRecoClient(server.grpc_url) as aio:
            one = await aio.reconstruct(events[4])
            many = [o async for o in aio.reconstruct_many(events[:5], in_flight=2)]
            return one, many

    one, many = asyncio.run(run())
    same(one, client.reconstruct(events[4]), exact=False)
    assert sorted(o.index for o in many) == list(range(5))
    for outcome in many:
        assert outcome.result is not None
        same(outcome.result, client.reconstruct(events[outcome.index]), exact=False)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recoserve.cli", *args], capture_output=True, text=True, timeout=600
    )


def test_reconstruct_cli_resumes_to_the_same_output(
    server: TritonServer, events: list, tmp_path: Path
) -> None:
    source = tmp_path / "events.parquet"
    write_events(source, events[:10])
    whole, resumed = tmp_path / "whole.parquet", tmp_path / "resumed.parquet"
    common = ["--server", server.grpc_url, "--clusters", "--chunk", "3"]
    assert _cli("reconstruct", str(source), "-o", str(whole), *common).returncode == 0
    first = _cli("reconstruct", str(source), "-o", str(resumed), *common, "--stop-after", "5")
    assert first.returncode == 0 and not resumed.exists()
    assert "partial results" in first.stderr
    second = _cli("reconstruct", str(source), "-o", str(resumed), *common)
    assert second.returncode == 0, second.stderr
    assert "5 done before, 5 reconstructed now" in " ".join(second.stderr.split())
    a, b = pq.read_table(whole), pq.read_table(resumed)
    assert a.column("index").to_pylist() == list(range(10))
    assert a.schema == b.schema
    for name in ("index", "event_id", "hit_cluster"):
        assert a.column(name).to_pylist() == b.column(name).to_pylist()
    # which events shared a server-side batch differs between the runs: floats agree to
    # float32 round-off, everything else exactly
    for name in ("candidates", "clusters"):
        xs, ys = a.column(name).to_pylist(), b.column(name).to_pylist()
        assert [len(e) for e in xs] == [len(e) for e in ys]
        for event_x, event_y in zip(xs, ys, strict=True):
            for row_x, row_y in zip(event_x, event_y, strict=True):
                assert row_x.keys() == row_y.keys()
                for key in row_x:
                    if isinstance(row_x[key], int):
                        assert row_x[key] == row_y[key], key
                    else:
                        assert row_x[key] == pytest.approx(row_y[key], rel=1e-6, abs=1e-5), key


def test_reconstruct_cli_never_mixes_runs(
    server: TritonServer, events: list, tmp_path: Path
) -> None:
    small, other = tmp_path / "small.parquet", tmp_path / "other.parquet"
    write_events(small, events[:4])
    write_events(other, events[4:10])
    out = tmp_path / "out.parquet"
    base = ["-o", str(out), "--server", server.grpc_url, "--chunk", "1"]
    assert _cli("reconstruct", str(small), *base, "--stop-after", "2").returncode == 0
    mixed = _cli("reconstruct", str(other), *base)  # another input file into the same parts
    assert mixed.returncode == 2 and "another input" in " ".join(mixed.stderr.split())
    clusters = _cli("reconstruct", str(small), *base, "--clusters")  # other options
    assert clusters.returncode == 2 and "another options" in " ".join(clusters.stderr.split())
    assert not out.exists()
    assert _cli("reconstruct", str(small), *base).returncode == 0  # the original command resumes
    assert pq.read_table(out).column("index").to_pylist() == [0, 1, 2, 3]
    written = out.stat().st_mtime_ns
    again = _cli("reconstruct", str(small), *base)
    assert again.returncode == 0 and "already complete" in " ".join(again.stderr.split())
    assert out.stat().st_mtime_ns == written
    redo = _cli("reconstruct", str(other), *base, "--overwrite")
    assert redo.returncode == 0
    assert pq.read_table(out).column("index").to_pylist() == list(range(6))


def test_reconstruct_cli_creates_nothing_without_a_server(events: list, tmp_path: Path) -> None:
    source = tmp_path / "events.parquet"
    write_events(source, events[:2])
    out = tmp_path / "out.parquet"
    dead = f"127.0.0.1:{free_ports(1)[0]}"
    result = _cli("reconstruct", str(source), "-o", str(out), "--server", dead, "--timeout", "2")
    assert result.returncode == 2 and "no healthy server" in result.stderr
    assert not out.exists() and not out.with_name("out.parquet.parts").exists()


def test_reconstruct_cli_reports_failed_events(
    server: TritonServer, events: list, tmp_path: Path
) -> None:
    broken = copy.deepcopy(events[5])
    broken.hits.energy[0] = np.nan
    source = tmp_path / "broken.parquet"
    write_events(source, [events[6], broken])
    result = _cli("reconstruct", str(source), "-o", str(tmp_path / "out.parquet"),
                  "--server", server.grpc_url)  # fmt: skip
    assert result.returncode == 1
    assert "1 failed" in result.stderr and "event 1" in result.stderr
    assert "non-finite" in result.stderr
