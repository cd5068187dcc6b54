"""Deployment: compose.yaml, the Dockerfiles, the Kubernetes manifests and the local scale-out
(two Triton replicas behind Envoy) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import numpy as np
import pytest
import yaml

from recoserve.client import AsyncRecoClient, RecoClient
from recoserve.server import gateway as gateway_module
from recoserve.server.envoy import (
    COMPOSE_ENTRY,
    KUBERNETES_CONFIGMAP,
    EntryPolicy,
    authenticated_entry,
    compose_entry_config,
    envoy_binary,
    kubernetes_entry_config,
    scale_out,
)
from recoserve.server.triton import public_models_only, start_triton
from recoserve.sim.classes import pf_event

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "docker" / "k8s"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def dockerfile(name: str) -> list[tuple[str, str]]:
    """(instruction, arguments) of a Dockerfile, continuation lines joined."""
    text = (ROOT / "docker" / name).read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_compose_services_images_and_builds(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"exporter", "triton", "triton-cpu", "gateway", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).exists(), name
        assert "image" in service, name
    triton_from = dict(dockerfile("triton.Dockerfile"))["FROM"]
    version = importlib.metadata.version("tritonclient")
    # NGC 24.10 ships Triton 2.51, the version of tritonclient and of the embedded server
    assert triton_from == "nvcr.io/nvidia/tritonserver:24.10-py3" and version.startswith("2.51")


def test_compose_gpu_shm_ports_and_healthchecks(compose: dict[str, Any]) -> None:
    triton = compose["services"]["triton"]
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert triton["shm_size"].endswith("gb") and float(triton["shm_size"][:-2]) >= 1
    assert "ports" not in triton  # only the entry is published
    entry = compose["services"]["entry"]
    assert set(entry["ports"]) == {"8000:8000", "8001:8001"}
    assert entry["depends_on"]["triton"]["condition"] == "service_healthy"
    assert "8002:8002" not in compose["services"]["triton-cpu"]["ports"]
    assert "localhost:8000/v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    gateway = compose["services"]["gateway"]
    assert "8080:8080" in gateway["ports"]
    assert "localhost:8080/healthz" in " ".join(gateway["healthcheck"]["test"])
    assert gateway["depends_on"]["triton"]["condition"] == "service_healthy"
    triton_args = gateway["command"]
    assert triton_args[triton_args.index("--triton") + 1] == "triton:8001"
    for name in ("prometheus", "grafana", "triton-cpu"):
        assert "healthcheck" in compose["services"][name], name
    assert compose["services"]["triton-cpu"]["profiles"] == ["cpu"]
    assert "--gateway-port" in compose["services"]["triton-cpu"]["command"]


def test_compose_volumes_and_repository_paths(compose: dict[str, Any]) -> None:
    services = compose["services"]
    exporter = services["exporter"]["command"]
    output = exporter[exporter.index("--output") + 1]
    assert exporter[exporter.index("--flavour") + 1] == "ngc"
    assert f"--model-repository={output}" in services["triton"]["command"]
    assert services["triton"]["depends_on"]["exporter"]["condition"] == (
        "service_completed_successfully"
    )
    assert "models:/models" in services["exporter"]["volumes"]
    assert any(v.startswith("models:/models") for v in services["triton"]["volumes"])
    assert "models" in compose["volumes"]
    for service in ("prometheus", "grafana"):
        for volume in services[service]["volumes"]:
            assert (ROOT / volume.split(":")[0]).exists(), volume


def test_prometheus_and_grafana_match_the_services(compose: dict[str, Any]) -> None:
    prometheus = yaml.safe_load((ROOT / "docker/prometheus/prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] for c in job["static_configs"]
               for t in c["targets"]}  # fmt: skip
    assert {"triton:8002", "gateway:8080", "triton-cpu:8002"} == targets
    dashboard = json.loads((ROOT / "docker/grafana/dashboards/recoserve.json").read_text())
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for word in ("throughput", "latency", "queue", "gpu"):
        assert word in titles
    expressions = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    gateway_metrics = set(re.findall(r"recoserve_gateway_\w+", expressions))
    source = Path(gateway_module.__file__).read_text()
    for metric in gateway_metrics:
        base = re.sub(r"_(total|bucket|sum|count)$", "", metric)
        assert f'"{base}"' in source, metric
    for metric in set(re.findall(r"nv_\w+", expressions)):
        assert metric in {
            "nv_inference_request_success", "nv_inference_request_failure",
            "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
            "nv_inference_exec_count", "nv_inference_count", "nv_gpu_utilization",
        }, metric  # fmt: skip


def test_dockerfiles_are_consistent(compose: dict[str, Any]) -> None:
    for name, port in (("triton.Dockerfile", "8000 8001 8002"), ("gateway.Dockerfile", "8080")):
        steps = dockerfile(name)
        assert ("EXPOSE", port) in steps, name
        assert any(word == "HEALTHCHECK" for word, _ in steps), name
        for word, args in steps:
            if word == "COPY" and "--from" not in args:
                for source in args.split()[:-1]:
                    assert (ROOT / source).exists(), (name, source)
    gateway_steps = dockerfile("gateway.Dockerfile")
    assert any("torch==2.13.0" in args for word, args in gateway_steps if word == "RUN")
    assert any("three.module.min.js" in args for word, args in gateway_steps if word == "COPY")


def manifests() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]  # fmt: skip


def test_kubernetes_manifests_validate_against_the_schemas() -> None:
    documents = manifests()
    core = [d for d in documents if d["kind"] != "ScaledObject"]
    assert {d["kind"] for d in core} >= {"Deployment", "Service", "ConfigMap", "Namespace"}
    for document in core:
        kubernetes_validate.validate(document, "1.37.0", strict=True)


def test_kubernetes_objects_refer_to_each_other() -> None:
    documents = {(d["kind"], d["metadata"]["name"]): d for d in manifests()}
    for (kind, name), document in documents.items():
        if kind == "Service":
            deployment = next(
                d for (k, _), d in documents.items()
                if k == "Deployment"
                and d["spec"]["template"]["metadata"]["labels"] == document["spec"]["selector"]
            )  # fmt: skip
            ports = {p["name"] for c in deployment["spec"]["template"]["spec"]["containers"]
                     for p in c["ports"]}  # fmt: skip
            assert {p["targetPort"] for p in document["spec"]["ports"]} <= ports, name
    assert documents[("Service", "triton-headless")]["spec"]["clusterIP"] == "None"
    scaled = documents[("ScaledObject", "triton")]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "triton"
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus"
    assert "nv_inference_queue_duration_us" in trigger["metadata"]["query"]
    gateway_args = documents[("Deployment", "gateway")]["spec"]["template"]["spec"]["containers"][
        0
    ]["args"]
    assert gateway_args[gateway_args.index("--triton") + 1] == "envoy:8001"


def test_the_deployed_entries_are_generated_from_the_code() -> None:
    configmap = yaml.safe_load((ROOT / KUBERNETES_CONFIGMAP).read_text())
    deployed = yaml.safe_load(configmap["data"]["envoy.yaml"])
    assert deployed == kubernetes_entry_config()
    cluster = deployed["static_resources"]["clusters"][0]
    assert cluster["lb_policy"] == "LEAST_REQUEST" and cluster["type"] == "STRICT_DNS"
    assert "grpc_health_check" in cluster["health_checks"][0]
    assert "circuit_breakers" in cluster  # bounded in flight
    assert yaml.safe_load((ROOT / COMPOSE_ENTRY).read_text()) == compose_entry_config()


def test_the_deployed_entries_run_on_the_tested_envoy(compose: dict[str, Any]) -> None:
    """The configurations are validated by the envoy binary the tests use, and the images run
    that same version."""
    version = subprocess.run(
        [envoy_binary(), "--version"], capture_output=True, text=True, check=True
    ).stdout
    release = re.search(r"/(\d+\.\d+\.\d+)/", version)
    assert release is not None, version
    k8s = yaml.safe_load_all((ROOT / "docker/k8s/envoy.yaml").read_text())
    images = [
        c["image"]
        for d in k8s
        if d and d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    images.append(compose["services"]["entry"]["image"])
    assert images and all(i == f"envoyproxy/envoy:v{release.group(1)}" for i in images), images
    configmap = yaml.safe_load((ROOT / KUBERNETES_CONFIGMAP).read_text())
    with tempfile.TemporaryDirectory() as workdir:
        for name, text in (
            ("k8s.yaml", configmap["data"]["envoy.yaml"]),
            ("compose.yaml", (ROOT / COMPOSE_ENTRY).read_text()),
        ):
            path = Path(workdir) / name
            path.write_text(text)
            done = subprocess.run(
                [envoy_binary(), "--mode", "validate", "-c", str(path)],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_local_scale_out_survives_losing_a_replica(repository: Path, tmp_path: Path) -> None:
    """Two replicas behind Envoy; one is killed under load: every event is answered exactly
    once, Envoy marks the replica unhealthy and traffic continues on the other."""
    events = [pf_event(941, i) for i in range(24)]
    with scale_out(repository, 2, tmp_path) as (envoy, (a, _)):
        assert envoy.healthy_upstreams() == 2

        async def run() -> list[Any]:
            outcomes = []
            async with AsyncRecoClient(envoy.url, timeout=60, backoff=0.2) as client:
                async for outcome in client.reconstruct_many(events, in_flight=6):
                    outcomes.append(outcome)
                    if len(outcomes) == 6:
                        assert a.process is not None
                        a.process.kill()  # a crash under load
            return outcomes

        outcomes = asyncio.run(run())
        assert [o.error for o in outcomes if o.error] == []
        assert sorted(o.index for o in outcomes) == list(range(len(events)))
        for _ in range(50):
            if envoy.healthy_upstreams() == 1:
                break
            time.sleep(0.2)
        assert envoy.healthy_upstreams() == 1


def test_a_stalled_replica_behind_the_entry_loses_no_event(
    repository: Path, tmp_path: Path
) -> None:
    """One of two replicas stops answering mid-stream (SIGSTOP: its connections stay open and
    nothing comes back, as over a stalled network). The entry's per-try timeout sends its
    requests to the other replica and its health check ejects it: every event is answered
    exactly once, with the same answer as from a healthy replica."""
    events = [pf_event(943, i) for i in range(16)]
    key = "k-stall-0123456789"
    policy = EntryPolicy(api_keys={key: "test"}, per_try_timeout_s=3.0)
    with (
        start_triton(repository, log_path=tmp_path / "a.log", extra_args=public_models_only()) as a,
        start_triton(repository, log_path=tmp_path / "b.log", extra_args=public_models_only()) as b,
        authenticated_entry([a, b], policy, tmp_path) as entry,
    ):
        assert entry.healthy_upstreams() == 4  # two replicas, gRPC and HTTP
        assert b.process is not None

        async def run() -> list[Any]:
            outcomes = []
            async with AsyncRecoClient(entry.url, timeout=60, api_key=key) as client:
                async for outcome in client.reconstruct_many(events, in_flight=4):
                    outcomes.append(outcome)
                    if len(outcomes) == 4:
                        os.kill(b.process.pid, signal.SIGSTOP)  # type: ignore[union-attr]
            return outcomes

        try:
            outcomes = asyncio.run(run())
            for _ in range(50):
                if entry.healthy_upstreams("triton") == 1:
                    break
                time.sleep(0.2)
            assert entry.healthy_upstreams("triton") == 1  # the stalled replica is out
        finally:
            os.kill(b.process.pid, signal.SIGCONT)
        assert [o.error for o in outcomes if o.error] == []
        assert sorted(o.index for o in outcomes) == list(range(len(events)))
        with RecoClient(a.grpc_url, shared_memory="never") as direct:
            for outcome in outcomes:
                expected = direct.reconstruct(events[outcome.index])
                np.testing.assert_array_equal(outcome.result.hit_cluster, expected.hit_cluster)


def test_shared_memory_through_a_load_balancer_falls_back_to_grpc(
    repository: Path, tmp_path: Path
) -> None:
    """Envoy listens on 127.0.0.1, so the client tries shared memory; the region is registered
    on one replica only, and requests that land on the other must still be answered."""
    events = [pf_event(942, i) for i in range(3)]
    with (
        scale_out(repository, 2, tmp_path) as (envoy, (a, _)),
        RecoClient(envoy.url, shared_memory="always") as through_envoy,
        RecoClient(a.grpc_url, shared_memory="never") as direct,
    ):
        for _ in range(4):
            for event in events:
                result = through_envoy.reconstruct(event)
                expected = direct.reconstruct(event)
                assert (result.hit_cluster == expected.hit_cluster).all()
                assert (result.candidates["pdg"] == expected.candidates["pdg"]).all()
