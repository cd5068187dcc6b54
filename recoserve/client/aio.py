"""`AsyncRecoClient`: the asyncio counterpart of ``RecoClient`` (tritonclient.grpc.aio).

Same contract as the synchronous client — typed results, input validation before sending,
retries with backoff on transient errors only, several servers with health-based failover, gRPC
compression, TLS, the model check — for services that must not block an event loop (the REST
gateway). ``reconstruct_many`` keeps ``in_flight`` requests running concurrently and yields
``Outcome`` objects as they complete. Shared memory is left to the synchronous client.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from recoserve.client.policy import ServerState, in_order_of_preference
from recoserve.client.results import ClusterResult, RecoResult, decode_result
from recoserve.client.sync import (
    CLUSTER_OUTPUTS,
    RECO_OUTPUTS,
    Headers,
    ModelMismatch,
    Outcome,
    RecoError,
    _message,
    checked_parameters,
    connection_options,
    credential_headers,
    diagnose,
    event_arrays,
    final_error,
    is_transient,
)
from recoserve.contract import InvalidInput
from recoserve.events.model import Event


class _AsyncServer:
    def __init__(
        self, url: str, options: dict[str, Any], version: str = "", headers: Headers = None
    ) -> None:
        import tritonclient.grpc.aio as aio

        self.url = url
        self.version = version  # "" = the latest version Triton serves
        self.headers = headers  # sent with every RPC (the credential)
        self.client = aio.InferenceServerClient(url, **options)
        self.state = ServerState()

    async def healthy(self, model: str) -> bool:
        try:
            return bool(
                await self.client.is_server_ready(headers=self.headers)
                and await self.client.is_model_ready(model, self.version, headers=self.headers)
            )
        except Exception:
            return False


class AsyncRecoClient:
    """Asyncio client of the recoserve Triton models."""

    def __init__(
        self,
        servers: str | list[str] = "127.0.0.1:8001",
        *,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.2,
        cooldown: float = 10.0,
        compression: str | None = None,
        ssl: bool = False,
        root_certificates: str | Path | None = None,
        private_key: str | Path | None = None,
        certificate_chain: str | Path | None = None,
        expected_checkpoints: dict[str, str] | None = None,
        model_version: str | int = "",
        api_key: str | None = None,
        token: str | None = None,
    ) -> None:
        urls, options = connection_options(
            servers, compression, ssl, root_certificates, private_key, certificate_chain
        )
        headers = credential_headers(api_key, token)
        self.servers = [_AsyncServer(u, options, str(model_version), headers) for u in urls]
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.cooldown = cooldown
        self.compression = compression
        self.expected_checkpoints = expected_checkpoints
        self._checked: set[str] = set()

    async def cluster(self, event: Event | np.ndarray) -> ClusterResult:
        pair = event if isinstance(event, Event) else (event, np.zeros((0, 9), np.float32))
        hits, _ = event_arrays(pair)
        return await self._call("hgcal_clustering", {"HITS": hits}, CLUSTER_OUTPUTS)

    async def reconstruct(self, event: Event | tuple[np.ndarray, np.ndarray]) -> RecoResult:
        hits, tracks = event_arrays(event)
        result = await self._call("event_reco", {"HITS": hits, "TRACKS": tracks}, RECO_OUTPUTS)
        assert isinstance(result, RecoResult)
        return result

    async def reconstruct_many(
        self, events: Iterable[Event | tuple[np.ndarray, np.ndarray]], in_flight: int = 8
    ) -> AsyncIterator[Outcome]:
        """Yields one Outcome per event as they complete. At most ``in_flight`` events are
        read from ``events`` and in flight at a time: a long (or endless) iterator is consumed
        as answers come back, never materialised."""

        async def one(index: int, event: Event | tuple[np.ndarray, np.ndarray]) -> Outcome:
            try:
                return Outcome(index, await self.reconstruct(event))
            except (RecoError, InvalidInput) as err:
                return Outcome(index, error=str(err))

        source = enumerate(events)
        running: set[asyncio.Task[Outcome]] = set()
        try:
            while True:
                for index, event in itertools.islice(source, in_flight - len(running)):
                    running.add(asyncio.create_task(one(index, event)))
                if not running:
                    return
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    yield task.result()
        finally:
            for task in running:
                task.cancel()

    async def check_model(self, model: str = "event_reco") -> dict[str, str]:
        server = await self._pick(model)
        return await self._check(server, model)

    async def close(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.client.close()

    async def __aenter__(self) -> AsyncRecoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _check(self, server: _AsyncServer, model: str) -> dict[str, str]:
        config = (
            await server.client.get_model_config(
                model, server.version, headers=server.headers, as_json=True
            )
        )["config"]
        return checked_parameters(config, self.expected_checkpoints, server.url, model)

    async def _pick(self, model: str) -> _AsyncServer:
        """The first server that is known healthy, or answers its health check (policy.py)."""
        for server in in_order_of_preference(self.servers):
            if server.state.known_healthy() or await server.healthy(model):
                server.state.answered()
                if self.expected_checkpoints and server.url not in self._checked:
                    await self._check(server, model)
                    self._checked.add(server.url)
                return server
            server.state.failed(self.cooldown)
        reasons = await asyncio.gather(
            *(asyncio.to_thread(diagnose, s.url, model) for s in self.servers)
        )
        raise RecoError(f"no healthy server with {model}: {'; '.join(reasons)}")

    async def _call(
        self, model: str, tensors: dict[str, np.ndarray], names: tuple[str, ...]
    ) -> ClusterResult | RecoResult:
        import tritonclient.grpc.aio as aio

        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                server = await self._pick(model)
            except ModelMismatch:
                raise
            except RecoError as err:  # no healthy server right now: wait and look again
                last = err
                await asyncio.sleep(self.backoff * 2**attempt)
                continue
            inputs = []
            for name, array in tensors.items():
                tensor = aio.InferInput(name, [1, *array.shape], "FP32")
                tensor.set_data_from_numpy(np.ascontiguousarray(array[None]))
                inputs.append(tensor)
            try:
                result = await server.client.infer(
                    model,
                    inputs,
                    model_version=server.version,
                    outputs=[aio.InferRequestedOutput(n) for n in names],
                    client_timeout=self.timeout,
                    headers=server.headers,
                    compression_algorithm=self.compression,
                )
                server.state.answered()
                return decode_result({n: result.as_numpy(n)[0] for n in names}, server.url)
            except Exception as err:
                if not is_transient(err):
                    raise final_error(model, server.url, err) from err
                last = err
                server.state.failed(self.cooldown)
                await asyncio.sleep(self.backoff * 2**attempt)
        raise RecoError(f"{model} failed after {self.retries + 1} attempts: {_message(last)}")
