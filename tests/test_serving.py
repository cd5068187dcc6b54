"""The served chain on a real, embedded Triton (local flavour) started on free ports."""

from __future__ import annotations

import contextlib
import queue
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from recoserve.contract import MAX_HITS, candidate_table, cluster_table
from recoserve.export.repository import MODEL_CLASSES, build_repository
from recoserve.inprocess import ClusteringPipeline, EventRecoPipeline
from recoserve.server.triton import Ports, TritonError, TritonServer, free_ports, start_triton
from recoserve.sim.classes import pf_event

FRESH_SEED = 901  # events no training, tuning or evaluation used


@pytest.fixture(scope="module")
def client(server: TritonServer) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(server.grpc_url)


@pytest.fixture(scope="module")
def reference(repository: Path) -> EventRecoPipeline:
    """The in-process chain on the very ONNX graphs the repository serves."""
    clustering = ClusteringPipeline(
        backend="onnx", exported=repository / "gravnet_oc" / "1" / "model.onnx"
    )
    return EventRecoPipeline(
        clustering, backend="onnx", exported=repository / "mlpf" / "1" / "model.onnx"
    )


def event_inputs(hits: np.ndarray, tracks: np.ndarray | None = None) -> list[grpcclient.InferInput]:
    tensors = [("HITS", hits)] + ([("TRACKS", tracks)] if tracks is not None else [])
    inputs = []
    for name, array in tensors:
        batch = np.ascontiguousarray(array[None])
        tensor = grpcclient.InferInput(name, list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        inputs.append(tensor)
    return inputs


def fresh_event(i: int) -> tuple[np.ndarray, np.ndarray]:
    event = pf_event(FRESH_SEED, i)
    return event.hits.features(), event.tracks.features()


def test_served_chain_equals_in_process(
    client: grpcclient.InferenceServerClient, reference: EventRecoPipeline
) -> None:
    for i in range(3):
        hits, tracks = fresh_event(i)
        result = client.infer("event_reco", event_inputs(hits, tracks))
        clusters, candidates = reference.reconstruct(hits, tracks)
        assert len(clusters) > 0 and len(candidates) > 0
        np.testing.assert_array_equal(result.as_numpy("HIT_CLUSTER")[0], clusters.hit_cluster)
        np.testing.assert_allclose(
            result.as_numpy("CLUSTERS")[0], cluster_table(hits, clusters), rtol=0, atol=1e-5
        )
        np.testing.assert_allclose(
            result.as_numpy("CANDIDATES")[0], candidate_table(candidates), rtol=0, atol=1e-5
        )
        only_clusters = client.infer("hgcal_clustering", event_inputs(hits))
        np.testing.assert_array_equal(
            only_clusters.as_numpy("HIT_CLUSTER")[0], clusters.hit_cluster
        )


def test_concurrent_batched_requests_equal_one_at_a_time(
    server: TritonServer, client: grpcclient.InferenceServerClient
) -> None:
    events = [fresh_event(10 + i) for i in range(12)]
    alone = [client.infer("event_reco", event_inputs(h, t)) for h, t in events]
    before = _settled_stats(client, "event_reco")
    done: queue.Queue[tuple[int, object, object]] = queue.Queue()
    for i, (h, t) in enumerate(events):
        client.async_infer(
            "event_reco",
            event_inputs(h, t),
            callback=lambda result, error, i=i: done.put((i, result, error)),
        )
    together: dict[int, object] = {}
    for _ in events:
        i, result, error = done.get(timeout=120)
        assert error is None, error
        together[i] = result
    after = _settled_stats(client, "event_reco")
    inferences, executions = (after[0] - before[0], after[1] - before[1])
    assert inferences == len(events)
    assert executions < inferences, "the dynamic batcher never put two events together"
    # Same cluster indices and candidate identities; floats to 1e-5 (absolute) or float32
    # round-off (1e-6 relative, for energies of ~100 GeV): a batch changes the GEMM sizes.
    for i, one in enumerate(alone):
        batched: grpcclient.InferResult = together[i]  # type: ignore[assignment]
        np.testing.assert_array_equal(batched.as_numpy("HIT_CLUSTER"), one.as_numpy("HIT_CLUSTER"))
        for name in ("CLUSTERS", "CANDIDATES"):
            np.testing.assert_allclose(
                batched.as_numpy(name), one.as_numpy(name), rtol=1e-6, atol=1e-5
            )
        np.testing.assert_array_equal(
            batched.as_numpy("CANDIDATES")[..., [0, 1, 6, 7]],
            one.as_numpy("CANDIDATES")[..., [0, 1, 6, 7]],
        )


def _execution_stats(client: grpcclient.InferenceServerClient, model: str) -> tuple[int, int]:
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def _settled_stats(client: grpcclient.InferenceServerClient, model: str) -> tuple[int, int]:
    """(inferences, executions) once they stop changing: Triton updates its statistics just
    after sending the responses."""
    last = _execution_stats(client, model)
    for _ in range(50):
        time.sleep(0.2)
        now = _execution_stats(client, model)
        if now == last:
            return now
        last = now
    return last


def test_empty_and_single_hit_events(client: grpcclient.InferenceServerClient) -> None:
    empty = client.infer(
        "event_reco", event_inputs(np.zeros((0, 5), np.float32), np.zeros((0, 9), np.float32))
    )
    assert empty.as_numpy("HIT_CLUSTER").shape == (1, 0)
    assert empty.as_numpy("CLUSTERS").shape == (1, 0, 12)
    assert empty.as_numpy("CANDIDATES").shape == (1, 0, 9)
    one_hit = np.array([[40.0, 30.0, 330.0, 0.5, 11.2]], np.float32)
    single = client.infer("hgcal_clustering", event_inputs(one_hit))
    assert single.as_numpy("HIT_CLUSTER").shape == (1, 1)
    assert single.as_numpy("CLUSTERS").shape[2] == 12


BAD_HITS = {
    "wrong dtype": (np.zeros((1, 4, 5), np.float64), "FP64", "data-type"),
    "wrong width": (np.zeros((1, 4, 4), np.float32), "FP32", "unexpected shape"),
    "NaN": (np.full((1, 4, 5), np.nan, np.float32), "FP32", "non-finite"),
    "inf": (np.array([[[1, 2, 330, np.inf, 11]]], np.float32), "FP32", "non-finite"),
    "negative energy": (np.array([[[1, 2, 330, -1, 11]]], np.float32), "FP32", "negative"),
    "oversize": (np.zeros((1, MAX_HITS + 1, 5), np.float32), "FP32", "more than the limit"),
}


@pytest.mark.parametrize("case", sorted(BAD_HITS))
def test_bad_input_is_refused_and_the_server_keeps_serving(
    client: grpcclient.InferenceServerClient, case: str
) -> None:
    array, dtype, message = BAD_HITS[case]
    tensor = grpcclient.InferInput("HITS", list(array.shape), dtype)
    tensor.set_data_from_numpy(array)
    with pytest.raises(InferenceServerException) as err:
        client.infer("hgcal_clustering", [tensor])
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert message in err.value.message()
    hits, _ = fresh_event(0)
    assert client.infer("hgcal_clustering", event_inputs(hits)).as_numpy("HIT_CLUSTER").size > 0


def test_bad_tracks_are_named(client: grpcclient.InferenceServerClient) -> None:
    hits, tracks = fresh_event(1)
    tracks[0, 4] = np.nan
    with pytest.raises(InferenceServerException) as err:
        client.infer("event_reco", event_inputs(hits, tracks))
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "TRACKS" in err.value.message() and "row 0, column 4" in err.value.message()


def test_http_endpoint_and_metrics_report_requests(server: TritonServer) -> None:
    http = httpclient.InferenceServerClient(server.http_url)
    assert http.is_model_ready("hgcal_clustering") and http.is_model_ready("event_reco")
    hits, _ = fresh_event(2)
    tensor = httpclient.InferInput("HITS", [1, *hits.shape], "FP32")
    tensor.set_data_from_numpy(hits[None])
    assert http.infer("hgcal_clustering", [tensor]).as_numpy("HIT_CLUSTER").shape == (1, len(hits))
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        text = response.read().decode()
    success = {
        line.split('model="')[1].split('"')[0]: float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("nv_inference_request_success{")
    }
    assert success["hgcal_clustering"] >= 1
    assert "event_reco" in success


def test_internal_models_are_callable(client: grpcclient.InferenceServerClient) -> None:
    hits, _ = fresh_event(3)
    segment = grpcclient.InferInput("SEGMENT", [len(hits)], "INT64")
    segment.set_data_from_numpy(np.zeros(len(hits), np.int64))
    raw = grpcclient.InferInput("HITS", list(hits.shape), "FP32")
    raw.set_data_from_numpy(hits)
    out = client.infer("gravnet_oc", [raw, segment])
    assert out.as_numpy("BETA").shape == (len(hits),)
    assert out.as_numpy("CCOORDS").shape == (len(hits), 3)


def test_port_taken_and_broken_model_give_clear_errors(repository: Path, tmp_path: Path) -> None:
    http, grpc, metrics = free_ports(3)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", grpc))
        blocker.listen()
        with pytest.raises(TritonError, match=f"gRPC port {grpc} is taken"):
            TritonServer(repository, Ports(http, grpc, metrics)).launch()
    broken = tmp_path / "broken"
    shutil.copytree(repository, broken)
    (broken / "mlpf" / "1" / "model.onnx").write_bytes(b"not an onnx graph")
    with (
        pytest.raises(TritonError, match="mlpf"),
        start_triton(broken, log_path=tmp_path / "triton.log", timeout=120),
    ):
        pass
    with pytest.raises(TritonError, match="no model repository"):
        TritonServer(tmp_path / "missing").launch()


def test_bls_network_mode_gives_the_same_results(
    repository: Path, client: grpcclient.InferenceServerClient, tmp_path: Path
) -> None:
    """The ngc flavour's public models call gravnet_oc / mlpf through BLS; check that path on
    the CPU with a local repository built in BLS mode."""
    bls = tmp_path / "bls"
    build_repository(bls, "local", network_mode="bls", parity=False)
    hits, tracks = fresh_event(4)
    inline = client.infer("event_reco", event_inputs(hits, tracks))
    with start_triton(bls, log_path=tmp_path / "triton.log") as server:
        other = grpcclient.InferenceServerClient(server.grpc_url)
        result = other.infer("event_reco", event_inputs(hits, tracks))
    for name in ("HIT_CLUSTER", "CLUSTERS", "CANDIDATES"):
        np.testing.assert_array_equal(result.as_numpy(name), inline.as_numpy(name))


def test_ngc_flavour_matches_the_local_contracts(repository: Path, tmp_path: Path) -> None:
    ngc = tmp_path / "ngc"
    build_repository(ngc, "ngc", parity=False)

    def parse(root: Path, name: str) -> model_config_pb2.ModelConfig:
        return text_format.Parse(
            (root / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
        )

    for name in MODEL_CLASSES:
        local, gpu = parse(repository, name), parse(ngc, name)
        assert [(t.name, t.data_type, list(t.dims)) for t in local.input] == [
            (t.name, t.data_type, list(t.dims)) for t in gpu.input
        ]
        assert [(t.name, t.data_type, list(t.dims)) for t in local.output] == [
            (t.name, t.data_type, list(t.dims)) for t in gpu.output
        ]
        assert (local.max_batch_size > 0) == (gpu.max_batch_size > 0)  # same batch dimension
        if name in ("gravnet_oc", "mlpf"):
            assert gpu.backend == "onnxruntime"
            assert gpu.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
            assert (ngc / name / "1" / "model.onnx").exists()
            assert not (ngc / name / "1" / "model.py").exists()
        else:
            assert gpu.backend == "python"
            assert (ngc / name / "1" / "model.py").exists()
    assert parse(ngc, "event_reco").parameters["network_mode"].string_value == "bls"


@pytest.mark.parametrize(
    ("stop", "with_gateway"),
    [(signal.SIGINT, True), (signal.SIGTERM, True), (signal.SIGHUP, False)],
    ids=["ctrl-c", "sigterm", "sighup-no-gateway"],
)
def test_recoserve_serve_starts_everything_and_stops_on_every_stop_signal(
    repository: Path, stop: signal.Signals, with_gateway: bool
) -> None:
    """Batch systems, systemd and Kubernetes stop jobs with SIGTERM; terminals with SIGHUP and
    SIGINT. Each stops every process `recoserve serve` started, frees its ports and exits with
    128 + the signal number."""
    http, grpc, metrics, gateway = free_ports(4)
    process = subprocess.Popen(
        [sys.executable, "-m", "recoserve.cli", "serve", "--repository", str(repository),
         "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
         "--gateway-port", str(gateway if with_gateway else 0)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    started: list[psutil.Process] = []
    try:
        ready = False
        for _ in range(600):
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{gateway}/readyz" if with_gateway else (
                    f"http://127.0.0.1:{http}/v2/health/ready")  # fmt: skip
                with urllib.request.urlopen(url, timeout=1) as r:
                    ready = r.status == 200
                    break
            time.sleep(0.2)
        assert ready, "recoserve serve did not become ready"
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc}")
        assert client.is_model_ready("event_reco") and client.is_model_ready("hgcal_clustering")
        started = psutil.Process(process.pid).children(recursive=True)
        assert any("tritonserver" in " ".join(p.cmdline()) for p in started)
        # only what the public path runs is loaded: no stub for the building blocks
        index = client.get_model_repository_index(as_json=True)["models"]
        loaded = {m["name"] for m in index if m.get("state") == "READY"}
        assert loaded == {"hgcal_clustering", "event_reco"}
        stubs = [" ".join(p.cmdline()) for p in started if "backend_stub" in " ".join(p.cmdline())]
        blocks = ("/gravnet_oc/", "/condensation/", "/mlpf/", "/mlpf_decode/")
        assert stubs and not any(b in stub for stub in stubs for b in blocks)
        time.sleep(2.0)  # Triton answers ready a poll (0.25 s) before serve prints its table
    finally:
        process.send_signal(stop)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + stop, output
    assert "recoserve is serving" in output and f"127.0.0.1:{grpc}" in output
    assert "stopping" in output
    alive = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [" ".join(p.cmdline()) for p in alive]
    assert not any(_listening(port) for port in (http, grpc, metrics, gateway))


def test_recoserve_serve_restarts_a_crashed_triton(repository: Path) -> None:
    """SIGKILL of Triton under `recoserve serve`: its stubs go with it, a new Triton is ready on
    the same ports, and a client with retries loses no event across the crash."""
    from recoserve.client import RecoClient

    http, grpc, metrics = free_ports(3)
    process = subprocess.Popen(
        [sys.executable, "-m", "recoserve.cli", "serve", "--repository", str(repository),
         "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
         "--gateway-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    events = [pf_event(931, i) for i in range(6)]
    try:
        first = _wait_for_triton(process.pid, http)
        old = [first, *first.children(recursive=True)]
        assert any("triton_python_backend_stub" in " ".join(p.cmdline()) for p in old)
        with RecoClient(f"127.0.0.1:{grpc}", retries=10, backoff=0.5, cooldown=0.5) as client:
            before = [client.reconstruct(e) for e in events[:3]]
            first.kill()  # a crash
            after = [client.reconstruct(e) for e in events[3:]]  # retried until it is back
        assert len(before) + len(after) == 6 and all(r.candidates.size for r in before + after)
        second = _wait_for_triton(process.pid, http)
        assert second.pid != first.pid
        survivors = [p for p in old if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not survivors, [" ".join(p.cmdline()) for p in survivors]
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert "restarting" in output and "ready again" in output, output
    assert not any(_listening(port) for port in (http, grpc, metrics))


def _wait_for_triton(serve_pid: int, http: int, timeout: float = 180.0) -> psutil.Process:
    """The ready tritonserver child of a `recoserve serve` process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = psutil.Process(serve_pid).children()
        tritons = [c for c in children if "tritonserver" in " ".join(c.cmdline())]
        with contextlib.suppress(OSError):
            url = f"http://127.0.0.1:{http}/v2/health/ready"
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200 and tritons and tritons[0].is_running():
                    return tritons[0]
        time.sleep(0.2)
    raise AssertionError("no ready Triton under recoserve serve")


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_your_own_checkpoint_is_served_and_equals_in_process(tmp_path: Path) -> None:
    """`export repository --clustering-checkpoint` with the run in progress (the current
    design: detector inputs, face-ordered candidates): parity-checked export, the served hash
    is that checkpoint's, and the served clusters equal the in-process ones on its ONNX graph."""
    import hashlib

    from recoserve.client import RecoClient

    own = (
        Path(__file__).resolve().parents[1] / "checkpoints/clustering/per-object-run/gravnet_oc.pt"
    )
    repo = tmp_path / "own_repository"
    done = subprocess.run(
        [sys.executable, "-m", "recoserve.cli", "export", "repository", "-o", str(repo),
         "--clustering-checkpoint", str(own)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    reference = ClusteringPipeline(
        own, backend="onnx", exported=repo / "gravnet_oc" / "1" / "model.onnx"
    )
    with (
        start_triton(repo, log_path=tmp_path / "triton.log") as server,
        RecoClient(server.grpc_url, shared_memory="never") as client,
    ):
        served = client.check_model()
        assert served["clustering_sha256"] == hashlib.sha256(own.read_bytes()).hexdigest()
        for i in range(2):
            hits, _ = fresh_event(i)
            result = client.cluster(hits)
            np.testing.assert_array_equal(result.hit_cluster, reference.cluster(hits).hit_cluster)


def test_the_chain_cost_benchmark_runs_both_chains_and_probes_memory(
    repository: Path, server: TritonServer
) -> None:
    """``recoserve bench``'s first part on the smallest size: both chains' stages timed on the
    same events, and the memory probes (a fresh process in-process; the server's processes)
    report a peak at least what was there before the events."""
    from recoserve.benchmark.chain_cost import (
        CHAIN_SIZES,
        gun_events,
        measure_chain_cost,
        peak_memory,
        served_peak_memory,
    )

    (cost,) = measure_chain_cost(repository, ("5k",), events_per_size=1, repeats=1, log=print)
    assert set(cost.ml_stages_ms) == {"network + condensation", "elements", "mlpf + decode"}
    assert set(cost.classical_stages_ms) == {"clue", "elements", "rule-based pf"}
    assert cost.ml_ms == pytest.approx(sum(cost.ml_stages_ms.values()))
    assert cost.ml_over_classical == pytest.approx(cost.ml_ms / cost.classical_ms)
    assert 3000 < cost.hits < 7000
    small = gun_events(CHAIN_SIZES["5k"], 1)[0]
    probe = peak_memory(repository, small, calls=2)
    assert probe["loaded_mb"] > 50
    assert probe["peak_mb_after_each_call"][-1] >= probe["loaded_mb"]
    assert server.process is not None
    served = served_peak_memory([server.process.pid], server.grpc_url, small, calls=1)
    assert served["peak_tree_mb"] >= served["idle_tree_mb"] > 0
    assert any(label.startswith("event_reco_0_") for label in served["peak_per_process_mb"])
