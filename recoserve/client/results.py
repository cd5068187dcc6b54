"""Typed results of the served models, decoded from Triton's output tensors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recoserve.contract import CLUSTER_COLUMNS, candidates_from_table

CLUSTER_DTYPE = np.dtype(
    [(name, np.int32 if name in ("n_hits", "seed") else np.float32) for name in CLUSTER_COLUMNS]
)


def clusters_from_table(table: np.ndarray) -> np.ndarray:
    """Structured array (``CLUSTER_DTYPE``) from the CLUSTERS table [K, 12]."""
    table = np.asarray(table, dtype=np.float32).reshape(-1, len(CLUSTER_COLUMNS))
    out = np.zeros(len(table), dtype=CLUSTER_DTYPE)
    for i, name in enumerate(CLUSTER_COLUMNS):
        out[name] = np.rint(table[:, i]) if out.dtype[name].kind == "i" else table[:, i]
    return out


@dataclass
class ClusterResult:
    """Clusters of one event: ``hit_cluster`` int64 [N] (-1 noise) and one row per cluster."""

    hit_cluster: np.ndarray
    clusters: np.ndarray  # structured, CLUSTER_DTYPE
    server: str = ""

    def __len__(self) -> int:
        return len(self.clusters)


@dataclass
class RecoResult(ClusterResult):
    """Clusters and particle candidates of one event."""

    candidates: np.ndarray = field(default_factory=lambda: np.zeros(0))  # CANDIDATE_DTYPE

    def to_awkward(self) -> Any:
        """The candidates as an awkward record array."""
        import awkward as ak

        return ak.Array({name: self.candidates[name] for name in self.candidates.dtype.names})

    def to_pandas(self) -> Any:
        """The candidates as a pandas DataFrame (needs pandas)."""
        import pyarrow as pa

        table = pa.table({name: self.candidates[name] for name in self.candidates.dtype.names})
        return table.to_pandas()


def decode_result(outputs: dict[str, np.ndarray], server: str = "") -> ClusterResult | RecoResult:
    """A typed result from the output arrays of one request (batch dimension of 1)."""
    hit_cluster = np.asarray(outputs["HIT_CLUSTER"]).reshape(-1)
    clusters = clusters_from_table(outputs["CLUSTERS"])
    if "CANDIDATES" not in outputs:
        return ClusterResult(hit_cluster, clusters, server)
    return RecoResult(hit_cluster, clusters, server, candidates_from_table(outputs["CANDIDATES"]))
