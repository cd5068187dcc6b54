"""The served tensor contracts: column layouts of the output tables and input validation.

One definition for the Triton Python backends, the client library (which decodes the tables and
validates before sending) and docs/serving.md. Output tables are float32 with one row per cluster
or candidate; integer columns (class ids, PDG ids, hit counts, element rows) are stored as exact
float32 integers (exact below 2^24).
"""

from __future__ import annotations

import numpy as np

from recoserve.postprocess.candidates import CANDIDATE_DTYPE
from recoserve.postprocess.condensation import Clusters
from recoserve.postprocess.elements import N_ELEMENT_FEATURES, TRACK_FEATURES

HIT_FEATURES = ("x", "y", "z", "energy", "time")  # cm, cm, cm, GeV, ns
MAX_HITS = 1_000_000  # the neighbour search keys rows with 20 bits
MAX_TRACKS = 100_000

CLUSTER_COLUMNS = (
    "energy",  # GeV, corrected
    "raw_energy",  # GeV, sum of hit energies
    "x",  # cm, entry point at the calorimeter face
    "y",
    "z",  # +-320 cm
    "time",  # ns at the face
    "beta",  # condensation strength of the seed
    "n_hits",
    "seed",  # row of the seed hit
    "p_em",
    "p_hadron",
    "p_mip",
)
CANDIDATE_COLUMNS = tuple(name for name in CANDIDATE_DTYPE.names or ())


class InvalidInput(ValueError):
    """A request tensor that breaks the contract; the message names the tensor and the problem."""


def check_rows(name: str, array: np.ndarray, width: int, max_rows: int) -> np.ndarray:
    """The array as float32 [N, width] if it is one event's valid table, else InvalidInput.

    Accepts [N, width] or a batch of one, [1, N, width].
    """
    if array.dtype != np.float32:
        raise InvalidInput(f"{name} must be FP32, got {array.dtype}")
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or array.shape[1] != width:
        raise InvalidInput(f"{name} must have shape [N, {width}], got {list(array.shape)}")
    if len(array) > max_rows:
        raise InvalidInput(f"{name} has {len(array)} rows, more than the limit of {max_rows}")
    bad = ~np.isfinite(array)
    if bad.any():
        row, column = (int(v) for v in np.argwhere(bad)[0])
        raise InvalidInput(
            f"{name} has {int(bad.sum())} non-finite values (NaN or inf), first at row {row}, "
            f"column {column}"
        )
    return array


def check_hits(hits: np.ndarray) -> np.ndarray:
    hits = check_rows("HITS", hits, len(HIT_FEATURES), MAX_HITS)
    if len(hits) and (hits[:, 3] < 0).any():
        raise InvalidInput(f"HITS has negative energies (column 3), first at row "
                           f"{int(np.flatnonzero(hits[:, 3] < 0)[0])}")  # fmt: skip
    return hits


def check_tracks(tracks: np.ndarray) -> np.ndarray:
    return check_rows("TRACKS", tracks, len(TRACK_FEATURES), MAX_TRACKS)


def check_elements(elements: np.ndarray) -> np.ndarray:
    return check_rows("ELEMENTS", elements, N_ELEMENT_FEATURES, MAX_HITS)


def cluster_table(hits: np.ndarray, clusters: Clusters) -> np.ndarray:
    """float32 [K, len(CLUSTER_COLUMNS)] of one event's clusters."""
    k = len(clusters)
    z = np.where(hits[clusters.seed, 2] >= 0, 320.0, -320.0) if k else np.zeros(0)
    columns = [
        clusters.energy,
        clusters.raw_energy,
        clusters.x,
        clusters.y,
        z,
        clusters.time,
        clusters.beta,
        clusters.n_hits,
        clusters.seed,
    ]
    table = np.zeros((k, len(CLUSTER_COLUMNS)), dtype=np.float32)
    for i, column in enumerate(columns):
        table[:, i] = column
    table[:, 9:12] = clusters.class_prob.reshape(k, 3)
    return table


def candidate_table(candidates: np.ndarray) -> np.ndarray:
    """float32 [P, len(CANDIDATE_COLUMNS)] from the structured candidate array."""
    table = np.zeros((len(candidates), len(CANDIDATE_COLUMNS)), dtype=np.float32)
    for i, name in enumerate(CANDIDATE_COLUMNS):
        table[:, i] = candidates[name]
    return table


def candidates_from_table(table: np.ndarray) -> np.ndarray:
    """The structured candidate array (``CANDIDATE_DTYPE``) back from its float32 table."""
    table = np.asarray(table, dtype=np.float32).reshape(-1, len(CANDIDATE_COLUMNS))
    out = np.zeros(len(table), dtype=CANDIDATE_DTYPE)
    for i, name in enumerate(CANDIDATE_COLUMNS):
        kind = CANDIDATE_DTYPE[name]
        out[name] = np.rint(table[:, i]) if kind.kind in "iu" else table[:, i]
    return out
