"""The recoserve client library: typed results from the served models (sync and asyncio)."""

from recoserve.client.aio import AsyncRecoClient
from recoserve.client.results import ClusterResult, RecoResult
from recoserve.client.sync import (
    CredentialError,
    ModelMismatch,
    Outcome,
    RecoClient,
    RecoError,
    RejectedInput,
)
from recoserve.contract import InvalidInput

__all__ = [
    "AsyncRecoClient",
    "ClusterResult",
    "CredentialError",
    "InvalidInput",
    "ModelMismatch",
    "Outcome",
    "RecoClient",
    "RecoError",
    "RecoResult",
    "RejectedInput",
]
