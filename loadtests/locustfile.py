"""Locust load test of the REST gateway: JSON and npz bodies, one simulated event each.

Headless and bounded (loadtests/run.py starts the service and runs it):
    locust -f loadtests/locustfile.py --headless -u 4 -r 4 -t 30s \
        --host http://127.0.0.1:8080 --csv benchmarks/results/loadtest_rest
Traffic goes only to the given host (127.0.0.1 in our runs).
"""

from __future__ import annotations

import io
import os

import numpy as np
from locust import HttpUser, between, task

from recoserve.sim.classes import pf_event

EVENTS = [pf_event(611, i) for i in range(int(os.environ.get("LOADTEST_EVENTS", "8")))]
JSON_BODIES = [{"hits": e.hits.features().tolist(), "tracks": e.tracks.features().tolist()}
               for e in EVENTS]  # fmt: skip
NPZ_BODIES = []
for e in EVENTS:
    buffer = io.BytesIO()
    np.savez(buffer, hits=e.hits.features(), tracks=e.tracks.features())
    NPZ_BODIES.append(buffer.getvalue())
# The credential of a gateway started with --api-key, from the same variable the CLI reads.
_KEY = os.environ.get("RECOSERVE_API_KEY")
HEADERS = {"x-api-key": _KEY} if _KEY else {}


class GatewayUser(HttpUser):
    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        self.i = 0

    @task(1)
    def reconstruct_json(self) -> None:
        self.i += 1
        self.client.post("/v1/reconstruct", json=JSON_BODIES[self.i % len(JSON_BODIES)],
                         headers=HEADERS, name="reconstruct json")  # fmt: skip

    @task(1)
    def reconstruct_npz(self) -> None:
        self.i += 1
        with self.client.post(
            "/v1/reconstruct",
            data=NPZ_BODIES[self.i % len(NPZ_BODIES)],
            headers={**HEADERS, "content-type": "application/x-npz", "accept": "application/x-npz"},
            name="reconstruct npz",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                return  # locust records the failure
            with np.load(io.BytesIO(response.content)) as answer:
                if "candidates" not in answer.files:
                    response.failure("npz answer without candidates")
