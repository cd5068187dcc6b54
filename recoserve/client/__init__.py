"""The recoserve client library: typed results from the served models (sync and asyncio)."""

from recoserve.client.aio import AsyncRecoClient
from recoserve.client.results import ClusterResult, RecoResult
from recoserve.client.sync import ModelMismatch, Outcome, RecoClient, RecoError

__all__ = [
    "AsyncRecoClient",
    "ClusterResult",
    "ModelMismatch",
    "Outcome",
    "RecoClient",
    "RecoError",
    "RecoResult",
]
