"""The served tensor contract, declared once: columns, dtypes, shapes, limits and validation.

Everything that crosses the wire is named here, and only here:

- the column layouts of the request tables (HITS, TRACKS) and of the answer tables (CLUSTERS,
  CANDIDATES) and of MLPF's input (ELEMENTS), with units;
- the tensors of every served model (``MODEL_TENSORS``): the model repository writes each
  config.pbtxt from them, the client names its inputs and outputs from them, docs/serving.md's
  tensor table is generated from them (``tensor_table_markdown``), and a test checks all three;
- the limits and the validation of a request (``check_hits``, ``check_tracks``), shared by the
  client (before sending), the gateway (before calling Triton) and the Triton Python backends;
- the conversion between the float32 answer tables and the structured candidate array.

Numpy only, so that the light client (``pip install recoserve``) imports it without the server's
dependencies. Answer tables are float32 with one row per cluster or candidate; integer columns
(class ids, PDG ids, hit counts, element rows) are exact float32 integers (exact below 2^24).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from recoserve.postprocess.condensation import Clusters

HIT_FEATURES = ("x", "y", "z", "energy", "time")  # cm, cm, cm, GeV, ns
TRACK_FEATURES = ("pt", "eta", "phi", "charge", "p", "x_calo", "y_calo", "z_calo", "n_layers")
MAX_HITS = 1_000_000  # the neighbour search keys rows with 20 bits
MAX_TRACKS = 100_000
# The largest |value| a column may hold. Hits: well around the calorimeter (20 m, 100 TeV,
# 10 us). Tracks: their extrapolation to the face can land far out (tens of metres for soft,
# central ones), so 10 km. Beyond these the network's float32 arithmetic overflowed (hits at
# 1e5-1e6 cm gave non-finite clustering coordinates; a pt of 3e38 GeV crashed the chain):
# such input is refused with a message instead.
HIT_LIMITS = (2e3, 2e3, 2e3, 1e5, 1e4)
TRACK_LIMITS = (1e5, 20.0, 10.0, 10.0, 1e5, 1e6, 1e6, 1e6, 1e3)

# Particle-flow elements (MLPF's input): tracks first, then clusters; 0 where a type lacks it.
TRACK, CLUSTER = 1.0, 2.0  # the "type" column
ELEMENT_FEATURES = (
    "type",  # 1 track, 2 cluster
    "pt",  # GeV: track pt, cluster transverse energy E / cosh(eta)
    "eta",
    "sin_phi",
    "cos_phi",
    "energy",  # GeV: track momentum p, cluster corrected energy
    "x",  # cm at the calorimeter face
    "y",
    "z",  # +-320 cm: the endcap
    "charge",  # track charge, 0 for clusters
    "size",  # track: tracker layers with a hit; cluster: number of hits
    "raw_energy",  # GeV, cluster: sum of its hit energies
    "time",  # ns, cluster arrival time at the face
    "p_em",  # cluster class probabilities (condensation network)
    "p_hadron",
    "p_mip",
    "width",  # cm, cluster: energy-weighted transverse RMS, projected to the face
    "depth",  # cm, cluster: energy-weighted mean depth |z| - 320
    "em_fraction",  # cluster: share of its energy in the electromagnetic section (CE-E)
)
N_ELEMENT_FEATURES = len(ELEMENT_FEATURES)

CLUSTER_CLASSES = ("em", "hadron", "mip")  # the clustering network's shower classes
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

PF_CLASSES = ("none", "charged_hadron", "neutral_hadron", "photon", "electron", "muon")
PF_REGRESSION = ("pt", "eta", "sin_phi", "cos_phi", "energy")  # MLPF's regressed quantities
CANDIDATE_DTYPE = np.dtype(
    [
        ("pdg", np.int32),
        ("charge", np.int8),
        ("pt", np.float32),  # GeV
        ("eta", np.float32),
        ("phi", np.float32),  # rad
        ("energy", np.float32),  # GeV
        ("class_id", np.int8),  # index in PF_CLASSES
        ("element", np.int32),  # row of the element it comes from
        ("probability", np.float32),  # softmax probability of the chosen class
    ]
)
CANDIDATE_COLUMNS = tuple(name for name in CANDIDATE_DTYPE.names or ())
CLUSTERING_SPACE_DIMS = 3  # width of CCOORDS, the clustering space of the network
# The credential of a request: HTTP header or gRPC metadata key (lower case, as gRPC wants it).
# Triton checks it itself when it serves other machines (``recoserve serve --api-key``), and so
# does the REST gateway.
API_KEY_HEADER = "x-api-key"
# Triton reads a restricted gRPC protocol's header under this prefix.
GRPC_API_KEY_METADATA = f"triton-grpc-protocol-{API_KEY_HEADER}"


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a served model, per event (the public models add the batch dimension)."""

    name: str
    dtype: str  # Triton's data type: "FP32", "INT64"
    dims: tuple[int, ...]  # -1: variable (one row per hit, track, element, cluster, candidate)
    columns: tuple[str, ...] = ()  # names of the last dimension's entries, where it has them
    ragged: bool = False  # public inputs: each event of a dynamic batch has its own length
    rows: str = "N"  # what the variable dimension counts: N hits, T tracks, E elements, ...


def _fp32(
    name: str, rows: str, columns: tuple[str, ...] = (), width: int | None = None
) -> TensorSpec:
    dims = (-1,) if width is None and not columns else (-1, width or len(columns))
    return TensorSpec(name, "FP32", dims, columns, rows=rows)


HITS = _fp32("HITS", "N", HIT_FEATURES)
TRACKS = _fp32("TRACKS", "T", TRACK_FEATURES)
ELEMENTS = _fp32("ELEMENTS", "E", ELEMENT_FEATURES)
HIT_CLUSTER = TensorSpec("HIT_CLUSTER", "INT64", (-1,))  # cluster of each hit, -1 = noise
CLUSTERS = _fp32("CLUSTERS", "K", CLUSTER_COLUMNS)
CANDIDATES = _fp32("CANDIDATES", "P", CANDIDATE_COLUMNS)
CLUSTERING_OUTPUTS = (
    _fp32("BETA", "N"),
    _fp32("CCOORDS", "N", width=CLUSTERING_SPACE_DIMS),
    _fp32("ENERGY_FACTOR", "N"),
    _fp32("POSITION", "N", ("x", "y")),
    _fp32("TIME", "N"),
    _fp32("CLASS_LOGITS", "N", CLUSTER_CLASSES),
)
MLPF_OUTPUTS = (_fp32("CLASS_LOGITS", "E", PF_CLASSES), _fp32("REGRESSION", "E", PF_REGRESSION))


def _segment(rows: str) -> TensorSpec:
    """The event index of each row of a multi-event call of an internal model."""
    return TensorSpec("SEGMENT", "INT64", (-1,), rows=rows)


def _ragged(spec: TensorSpec) -> TensorSpec:
    return TensorSpec(spec.name, spec.dtype, spec.dims, spec.columns, True, spec.rows)


# model name -> (inputs, outputs). The public models are what clients call; the internal ones
# are their building blocks (served on request, see docs/serving.md).
MODEL_TENSORS: dict[str, tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]] = {
    "hgcal_clustering": ((_ragged(HITS),), (HIT_CLUSTER, CLUSTERS)),
    "event_reco": ((_ragged(HITS), _ragged(TRACKS)), (HIT_CLUSTER, CLUSTERS, CANDIDATES)),
    "gravnet_oc": ((HITS, _segment("N")), CLUSTERING_OUTPUTS),
    "condensation": ((HITS, *CLUSTERING_OUTPUTS), (HIT_CLUSTER, CLUSTERS)),
    "mlpf": ((ELEMENTS, _segment("E")), MLPF_OUTPUTS),
    "mlpf_decode": ((ELEMENTS, *MLPF_OUTPUTS), (CANDIDATES,)),
}
PUBLIC_MODELS = ("hgcal_clustering", "event_reco")


def output_names(model: str) -> tuple[str, ...]:
    return tuple(spec.name for spec in MODEL_TENSORS[model][1])


def tensor_table_markdown() -> str:
    """The tensors of every served model as a Markdown table (docs/serving.md)."""
    rows = [
        "| model | direction | tensor | type | shape per event | columns |",
        "|---|---|---|---|---|---|",
    ]
    for model, (inputs, outputs) in MODEL_TENSORS.items():
        batch = "[1, " if model in PUBLIC_MODELS else "["
        for direction, specs in (("in", inputs), ("out", outputs)):
            for spec in specs:
                dims = ", ".join(spec.rows if d < 0 else str(d) for d in spec.dims)
                columns = ", ".join(spec.columns)
                rows.append(
                    f"| `{model}` | {direction} | `{spec.name}` | {spec.dtype} | "
                    f"{batch}{dims}] | {columns} |"
                )
    return "\n".join(rows)


class InvalidInput(ValueError):
    """A request tensor that breaks the contract; the message names the tensor and the problem."""


def check_rows(
    name: str,
    array: np.ndarray,
    width: int,
    max_rows: int,
    limits: tuple[float, ...] | None = None,
    columns: tuple[str, ...] = (),
) -> np.ndarray:
    """The array as float32 [N, width] if it is one event's valid table, else InvalidInput.

    Accepts [N, width] or a batch of one, [1, N, width]; ``limits`` bound each column's |value|.
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
    if limits is not None and len(array):
        over = np.abs(array) > np.asarray(limits, dtype=np.float32)
        if over.any():
            row, column = (int(v) for v in np.argwhere(over)[0])
            label = f" ({columns[column]})" if columns else ""
            raise InvalidInput(
                f"{name} column {column}{label} holds {float(array[row, column]):g} at row {row}, "
                f"beyond the limit of +-{limits[column]:g}"
            )
    return array


def check_hits(hits: np.ndarray) -> np.ndarray:
    hits = check_rows("HITS", hits, len(HIT_FEATURES), MAX_HITS, HIT_LIMITS, HIT_FEATURES)
    if len(hits) and (hits[:, 3] < 0).any():
        raise InvalidInput(f"HITS has negative energies (column 3), first at row "
                           f"{int(np.flatnonzero(hits[:, 3] < 0)[0])}")  # fmt: skip
    return hits


def check_tracks(tracks: np.ndarray) -> np.ndarray:
    return check_rows(
        "TRACKS", tracks, len(TRACK_FEATURES), MAX_TRACKS, TRACK_LIMITS, TRACK_FEATURES
    )


def check_elements(elements: np.ndarray) -> np.ndarray:
    return check_rows("ELEMENTS", elements, N_ELEMENT_FEATURES, MAX_HITS)


def cluster_table(hits: np.ndarray, clusters: Clusters) -> np.ndarray:
    """float32 [K, len(CLUSTER_COLUMNS)] of one event's clusters."""
    k = len(clusters)
    z = np.where(hits[clusters.seed, 2] >= 0, 320.0, -320.0) if k else np.zeros(0)
    columns = {
        "energy": clusters.energy,
        "raw_energy": clusters.raw_energy,
        "x": clusters.x,
        "y": clusters.y,
        "z": z,
        "time": clusters.time,
        "beta": clusters.beta,
        "n_hits": clusters.n_hits,
        "seed": clusters.seed,
    }
    table = np.zeros((k, len(CLUSTER_COLUMNS)), dtype=np.float32)
    for i, name in enumerate(CLUSTER_COLUMNS[: len(columns)]):
        table[:, i] = columns[name]
    table[:, len(columns) :] = clusters.class_prob.reshape(k, len(CLUSTER_CLASSES))
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


DOCS_MARKERS = ("<!-- contract:tensors -->\n", "<!-- /contract:tensors -->")


def write_docs_table(path: str) -> None:
    """Replace the generated tensor table between ``DOCS_MARKERS`` in a Markdown file."""
    import re
    from pathlib import Path

    text = Path(path).read_text()
    start, end = (re.escape(m) for m in DOCS_MARKERS)
    new = re.sub(
        f"({start}).*?({end})",
        lambda m: m.group(1) + tensor_table_markdown() + "\n" + m.group(2),
        text,
        flags=re.S,
    )
    Path(path).write_text(new)


if __name__ == "__main__":
    import sys

    write_docs_table(sys.argv[1] if len(sys.argv) > 1 else "docs/serving.md")
