"""The REST gateway: FastAPI in front of Triton, for web clients, notebooks and other languages.

Endpoints (OpenAPI at ``/docs``):

- ``POST /v1/cluster``, ``POST /v1/reconstruct``: one event; ``POST /v1/reconstruct/batch``:
  several (JSON). Bodies and responses in JSON, Arrow IPC or npz (``recoserve.server.bodies``).
- ``POST /v1/simulate``: a simulated event for the event display (bounded size).
- ``GET /healthz`` (the gateway runs), ``GET /readyz`` (Triton and both public models ready),
  ``GET /metrics`` (Prometheus: requests by endpoint and status, latency histogram).
- ``GET /``: the event display.

Who may call and how often is ``recoserve.server.auth``; the wire formats and the limits on
decoding them are ``recoserve.server.bodies``; slow and many connections are
``recoserve.server.connections``; this module holds the settings and the routes. It calls
Triton through ``AsyncRecoClient`` (pooled async gRPC channels), so the event loop never
blocks on inference. Only the two public models are reachable: Triton's admin APIs (model
control, shared memory, logging) are not proxied. Validation limits, API keys or JWT bearer
tokens, per-key rate limiting and CORS are set by ``GatewaySettings``.
"""

# The extra is checked before its modules are imported:
# ruff: noqa: E402
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from recoserve.extras import require

require("gateway", "the REST gateway (recoserve.server.gateway)")

import numpy as np
from fastapi import FastAPI, Query, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from recoserve.client.aio import AsyncRecoClient
from recoserve.client.results import ClusterResult
from recoserve.client.sync import RecoError, RejectedInput
from recoserve.contract import (
    HIT_FEATURES,
    HIT_LIMITS,
    TRACK_FEATURES,
    TRACK_LIMITS,
    InvalidInput,
    check_hits,
    check_tracks,
)
from recoserve.server import bodies
from recoserve.server.auth import Authoriser, GatewayError

log = logging.getLogger("recoserve.gateway")


@dataclass
class GatewaySettings:
    triton: list[str] = field(default_factory=lambda: ["127.0.0.1:8001"])
    api_keys: frozenset[str] = frozenset()  # empty: no API-key check
    jwt_secret: str | None = None  # HS256 bearer tokens accepted when set
    rate_limit_per_minute: int = 600  # per key (or per client address without keys)
    max_hits: int = 500_000
    max_tracks: int = 20_000
    max_events_per_batch: int = 64
    max_body_bytes: int = 64 * 1024 * 1024
    max_decoded_bytes: int = 256 * 1024 * 1024  # an npz's inflated / Arrow's decompressed size
    cors_origins: tuple[str, ...] = ()
    simulate_max_particles: int = 200
    simulate_enabled: bool = True  # POST /v1/simulate (the event display's "simulate" button)
    failed_auth_per_minute: int = 30  # per client address
    jwt_audience: str | None = None  # required "aud" claim, when set
    jwt_issuer: str | None = None  # required "iss" claim, when set
    timeout: float = 60.0
    triton_api_key: str | None = None  # sent to Triton when it checks one (it serves others)
    header_timeout_s: float = 10.0  # request line and headers must arrive within this
    body_timeout_s: float = 60.0  # ... and the body within this after them
    max_connections_per_address: int = 64


def _row(
    columns: tuple[str, ...], limits: tuple[float, ...], non_negative: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A table row: one number per column, within the contract's limits."""
    return {
        "type": "array",
        "prefixItems": [
            {"type": "number", "minimum": 0 if c in non_negative else -limit, "maximum": limit}
            for c, limit in zip(columns, limits, strict=True)
        ],
        "items": False,
        "minItems": len(columns),
        "maxItems": len(columns),
    }


HIT_ROW = _row(HIT_FEATURES, HIT_LIMITS, non_negative=("energy",))
TRACK_ROW = _row(TRACK_FEATURES, TRACK_LIMITS)


def event_schema(settings: GatewaySettings) -> dict[str, Any]:
    """The JSON body of one event, as the OpenAPI document declares it (limits included)."""
    return {
        "type": "object",
        "required": ["hits"],
        "additionalProperties": False,
        "properties": {
            "hits": {
                "type": "array",
                "items": HIT_ROW,
                "maxItems": settings.max_hits,
                "description": f"{', '.join(HIT_FEATURES)} (cm, cm, cm, GeV, ns)",
            },
            "tracks": {
                "type": "array",
                "items": TRACK_ROW,
                "maxItems": settings.max_tracks,
                "description": ", ".join(TRACK_FEATURES),
            },
        },
    }


def batch_schema(settings: GatewaySettings) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["events"],
        "additionalProperties": False,
        "properties": {
            "events": {
                "type": "array",
                "items": event_schema(settings),
                "minItems": 1,
                "maxItems": settings.max_events_per_batch,
            }
        },
    }


def _request_body(schema: dict[str, Any], description: str, binary: bool) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if binary:
        for kind in (bodies.ARROW, bodies.NPZ):
            content[kind] = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": True, "description": description, "content": content}}


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    state: dict[str, AsyncRecoClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if "client" in state:
            await state["client"].close()

    app = FastAPI(
        title="recoserve gateway",
        version="1",
        description="Particle reconstruction as a service: REST in front of Triton.",
        lifespan=lifespan,
        docs_url=None,  # served below from vendored assets, never from a CDN
        redoc_url=None,
    )
    registry = CollectorRegistry()
    requests_total = Counter(
        "recoserve_gateway_requests", "Requests by endpoint and status", ["endpoint", "status"],
        registry=registry,
    )  # fmt: skip
    latency = Histogram(
        "recoserve_gateway_latency_seconds", "Request latency", ["endpoint"], registry=registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    )  # fmt: skip
    authorise = Authoriser(
        api_keys=settings.api_keys,
        jwt_secret=settings.jwt_secret,
        jwt_audience=settings.jwt_audience,
        jwt_issuer=settings.jwt_issuer,
        rate_limit_per_minute=settings.rate_limit_per_minute,
        failed_auth_per_minute=settings.failed_auth_per_minute,
    )

    def client() -> AsyncRecoClient:
        if "client" not in state:  # created inside the running loop
            state["client"] = AsyncRecoClient(
                settings.triton, timeout=settings.timeout, api_key=settings.triton_api_key
            )
        return state["client"]

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )

    @app.middleware("http")
    async def account(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        endpoint = request.url.path if request.url.path in ROUTES else "other"
        try:
            response = await call_next(request)
        except GatewayError as err:  # pragma: no cover - handled by the exception handler
            response = JSONResponse({"detail": err.message}, status_code=err.status)
        except Exception as err:  # a fault of the service: counted, logged once, no request data
            log.error("%s %s failed: %s: %s", request.method, endpoint, type(err).__name__, err)
            response = JSONResponse({"detail": "internal error"}, status_code=500)
        latency.labels(endpoint).observe(time.perf_counter() - start)
        requests_total.labels(endpoint, str(response.status_code)).inc()
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_parameters(_: Request, err: RequestValidationError) -> JSONResponse:
        # FastAPI's own checks (query parameters): one sentence like every other 4xx here
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', '')}"
            for e in err.errors()
        ]
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    @app.exception_handler(GatewayError)
    async def gateway_error(_: Request, err: GatewayError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else {}
        if err.retry_after is not None:
            headers["Retry-After"] = str(err.retry_after)
        return JSONResponse({"detail": err.message}, status_code=err.status, headers=headers)

    async def read_events(
        request: Request, batch: bool
    ) -> tuple[list[tuple[np.ndarray, ...]], dict[int, GatewayError]]:
        """The events of a body, and what is wrong with each invalid one. A body that cannot
        be decoded fails whole; an event that breaks a limit or the contract fails alone."""
        length = request.headers.get("content-length")
        if length is not None and int(length) > settings.max_body_bytes:
            raise GatewayError(413, f"body of {length} bytes exceeds {settings.max_body_bytes}")
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > settings.max_body_bytes:
                raise GatewayError(413, f"body exceeds {settings.max_body_bytes} bytes")
        if not raw:
            raise GatewayError(400, "empty body: send an event (see /docs)")
        limits = bodies.BodyLimits(
            settings.max_hits, settings.max_tracks, settings.max_decoded_bytes
        )
        try:
            # Off the event loop: /healthz and other requests are answered meanwhile.
            events = await asyncio.to_thread(
                bodies.events_from_body,
                bytes(raw),
                request.headers.get("content-type", bodies.JSON),
                batch,
                limits,
            )
        except bodies.BodyError as err:
            raise GatewayError(err.status, str(err)) from None
        if batch and not 1 <= len(events) <= settings.max_events_per_batch:
            raise GatewayError(
                422, f"a batch holds 1 to {settings.max_events_per_batch} events, got {len(events)}"
            )
        problems: dict[int, GatewayError] = {}
        for i, (hits, tracks) in enumerate(events):
            where = f"events[{i}]." if batch else ""
            if len(hits) > settings.max_hits:
                problems[i] = GatewayError(
                    413, f"{where}hits: {len(hits)} rows > limit {settings.max_hits}"
                )
            elif len(tracks) > settings.max_tracks:
                problems[i] = GatewayError(
                    413, f"{where}tracks: {len(tracks)} rows > limit {settings.max_tracks}"
                )
            else:
                try:
                    check_hits(hits)
                    check_tracks(tracks)
                except InvalidInput as err:
                    problems[i] = GatewayError(422, f"{where}{err}")
        if problems and not batch:
            raise problems[0]
        return events, problems

    def negotiate(request: Request, batch: bool) -> str:
        """The media type of the answer, decided before any work (406 if none fits)."""
        accept = request.headers.get("accept", bodies.JSON).split(",")[0].split(";")[0].strip()
        if accept in ("", "*/*"):
            accept = bodies.JSON
        if batch and accept != bodies.JSON:
            raise GatewayError(406, "batch responses are JSON (Accept: application/json)")
        if accept not in bodies.MEDIA_TYPES:
            raise GatewayError(
                406, f"cannot answer in {accept!r}; use {', '.join(bodies.MEDIA_TYPES)}"
            )
        return accept

    def respond(accept: str, results: list[ClusterResult | GatewayError], batch: bool) -> Response:
        if batch:
            # One entry per event, in order: its result, or the error of that event alone.
            failed = [r for r in results if isinstance(r, GatewayError)]
            if failed and len(failed) == len(results) and all(r.status == 503 for r in failed):
                raise failed[0]  # the service is down, not the events wrong
            entries = [
                {"error": {"status": r.status, "detail": r.message}}
                if isinstance(r, GatewayError)
                else bodies.result_to_json(r)
                for r in results
            ]
            return JSONResponse({"results": entries, "errors": len(failed)})
        (result,) = results
        if isinstance(result, GatewayError):
            raise result
        if accept == bodies.JSON:
            return JSONResponse(bodies.result_to_json(result))
        if accept == bodies.NPZ:
            return Response(bodies.result_to_npz(result), media_type=bodies.NPZ)
        return Response(bodies.result_to_arrow(result), media_type=bodies.ARROW)

    async def infer_one(
        kind: str, hits: np.ndarray, tracks: np.ndarray
    ) -> ClusterResult | GatewayError:
        try:
            if kind == "cluster":
                return await client().cluster(hits)
            return await client().reconstruct((hits, tracks))
        except RejectedInput as err:  # by status code, never by the message's text
            return GatewayError(422, str(err))
        except RecoError as err:
            log.warning("reconstruction failed: %s", err)  # addresses stay in the log
            return GatewayError(503, "reconstruction service unavailable; try again later")

    async def infer(
        kind: str, events: list[tuple[np.ndarray, ...]], problems: dict[int, GatewayError]
    ) -> list[ClusterResult | GatewayError]:
        """Every valid event sent concurrently; each answer is its result or its own error."""
        valid = [i for i in range(len(events)) if i not in problems]
        answers = await asyncio.gather(*(infer_one(kind, *events[i][:2]) for i in valid))
        results: dict[int, ClusterResult | GatewayError] = {
            **problems,
            **dict(zip(valid, answers, strict=True)),
        }
        return [results[i] for i in range(len(events))]

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The gateway process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "Triton not ready"}})
    async def readyz() -> JSONResponse:
        """Ready when a Triton server answers with both public models ready; otherwise says,
        per Triton server (numbered in the order configured, no addresses), what is not."""
        report = []
        for number, server in enumerate(client().servers, start=1):
            models = {m: await server.healthy(m) for m in ("hgcal_clustering", "event_reco")}
            if all(models.values()):
                return JSONResponse({"status": "ready", "triton": number})
            report.append({"triton": number, "models_ready": models})
        return JSONResponse({"status": "not ready", "servers": report}, status_code=503)

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> Response:
        """Prometheus metrics of the gateway."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    errors: dict[int | str, dict[str, Any]] = {
        400: {"description": "malformed body"},
        401: {"description": "missing or bad credentials"},
        406: {"description": "unsupported Accept"},
        413: {"description": "body or event too large"},
        415: {"description": "unsupported Content-Type"},
        422: {"description": "invalid event (names the field and problem)"},
        429: {"description": "rate limit exceeded"},
        503: {"description": "Triton unavailable"},
    }

    # Declared in the OpenAPI schema (Swagger UI's "Authorize") when this gateway checks them;
    # ``authorise`` does the checks.
    credentials = (
        [
            Security(APIKeyHeader(name="X-API-Key", auto_error=False)),
            Security(HTTPBearer(auto_error=False)),
        ]
        if authorise.enabled
        else []
    )

    def events_endpoint(kind: str, batch: bool, doc: str) -> Any:
        async def endpoint(request: Request) -> Response:
            authorise(request)
            accept = negotiate(request, batch)
            events, problems = await read_events(request, batch)
            return respond(accept, await infer(kind, events, problems), batch)

        endpoint.__doc__ = doc
        return endpoint

    one, several = event_schema(settings), batch_schema(settings)
    for path, kind, batch, schema, body, doc in (
        ("/v1/cluster", "cluster", False, one, "One event: hits (tracks are ignored).",
         "Cluster the hits of one event (hgcal_clustering)."),
        ("/v1/reconstruct", "reconstruct", False, one, "One event: hits and tracks.",
         "Clusters and particle candidates of one event (event_reco)."),
        ("/v1/reconstruct/batch", "reconstruct", True, several, "Several events.",
         "Clusters and candidates of several events (sent to Triton concurrently)."),
    ):  # fmt: skip
        app.add_api_route(
            path,
            events_endpoint(kind, batch, doc),
            methods=["POST"],
            name=path.strip("/").replace("/", "_"),
            tags=["reconstruction"],
            openapi_extra=_request_body(schema, body, binary=not batch),
            responses=errors,
            dependencies=credentials,
        )

    @app.post("/v1/simulate", tags=["display"], responses=errors, dependencies=credentials)
    async def simulate(
        request: Request,
        particles: int = Query(30, ge=1, le=settings.simulate_max_particles),
        seed: int = Query(1, ge=0, lt=2**31),
        jets: bool = False,
    ) -> JSONResponse:
        """A simulated event (hits and tracks) for the event display."""
        if not settings.simulate_enabled:
            raise GatewayError(404, "simulation is switched off on this gateway")
        authorise(request)
        if not 1 <= particles <= settings.simulate_max_particles:
            raise GatewayError(
                422, f"particles must be 1..{settings.simulate_max_particles}, got {particles}"
            )
        if not 0 <= seed < 2**31:
            raise GatewayError(422, "seed must be in [0, 2^31)")
        event = await asyncio.to_thread(_simulate, particles, seed, jets)
        return JSONResponse(event)

    static = resources.files("recoserve.server") / "static"

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def display() -> HTMLResponse:
        return HTMLResponse((static / "index.html").read_text())

    def vendored(*names: str) -> HTMLResponse | None:
        """None when the assets are installed, else a page that says how to get them."""
        missing = [n for n in names if not (static / "vendor" / n).is_file()]
        if not missing:
            return None
        return HTMLResponse(
            f"<p>{', '.join(missing)} not installed (they are vendored at build time: "
            "<code>make vendor-js</code>); the schema is at <a href='/openapi.json'>"
            "/openapi.json</a>.</p>",
            status_code=503,
        )

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return vendored("swagger-ui-bundle.js", "swagger-ui.css") or get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - Swagger UI",
            swagger_js_url="/static/vendor/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui.css",
            swagger_favicon_url="data:,",
        )

    @app.get("/redoc", response_class=HTMLResponse, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return vendored("redoc.standalone.js") or get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url="/static/vendor/redoc.standalone.js",
            redoc_favicon_url="data:,",
            with_google_fonts=False,
        )

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app


ROUTES = {
    "/v1/cluster", "/v1/reconstruct", "/v1/reconstruct/batch", "/v1/simulate",
    "/healthz", "/readyz", "/metrics", "/",
}  # fmt: skip


def _simulate(particles: int, seed: int, jets: bool) -> dict[str, Any]:
    from recoserve.sim.jets import JetGunConfig
    from recoserve.sim.particles import GunConfig
    from recoserve.sim.simulator import SimConfig, Simulator

    config = SimConfig(
        gun=GunConfig(n_particles=particles, energy_min=5.0, energy_max=100.0),
        jets=JetGunConfig(n_jets=2) if jets else None,
    )
    event = Simulator(config).event(seed, 0)
    return {
        "hits": np.round(event.hits.features(), 4).tolist(),
        "tracks": np.round(event.tracks.features(), 5).tolist(),
        "truth_particle": event.hits.truth_particle.tolist(),
    }


def serve_gateway(settings: GatewaySettings, host: str, port: int) -> None:
    """Run the gateway with uvicorn until it is stopped, with the connection rules of
    ``recoserve.server.connections`` (slow requests cut off, connections per address capped)."""
    import uvicorn

    from recoserve.server.connections import uvicorn_options

    options = uvicorn_options(
        settings.header_timeout_s, settings.body_timeout_s, settings.max_connections_per_address
    )
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", **options)
