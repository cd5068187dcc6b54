"""What a physicist would otherwise write: FastAPI + eager PyTorch + JSON, one process.

The same trained networks and post-processing as the served chain (so the answers are the
same), without batching, without an inference server and without binary transport: a plain
``def`` endpoint that parses JSON, runs the chain in eager PyTorch and returns JSON. It is the
"naive server" of the benchmarks. Run: ``python -m recoserve.benchmark.naive_server PORT``.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel


class EventBody(BaseModel):
    hits: list[list[float]]
    tracks: list[list[float]] = []


def create_naive_app() -> FastAPI:
    from recoserve.inprocess import EventRecoPipeline

    pipeline = EventRecoPipeline()  # eager PyTorch
    app = FastAPI(title="naive reconstruction server")

    @app.post("/reconstruct")
    def reconstruct(body: EventBody) -> dict[str, Any]:
        hits = np.asarray(body.hits, dtype=np.float32).reshape(-1, 5)
        tracks = np.asarray(body.tracks, dtype=np.float32).reshape(-1, 9)
        clusters, candidates = pipeline.reconstruct(hits, tracks)
        names = candidates.dtype.names or ()
        return {
            "hit_cluster": clusters.hit_cluster.tolist(),
            "candidates": [dict(zip(names, row.tolist(), strict=True)) for row in candidates],
        }

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_naive_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
