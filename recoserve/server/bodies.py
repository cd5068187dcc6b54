"""Request and response bodies of the REST gateway: JSON, Arrow IPC and npz.

Request formats (selected by Content-Type):

- ``application/json``: ``{"hits": [[x, y, z, energy, time], ...], "tracks": [[9 numbers],
  ...]}``; a batch is ``{"events": [event, ...]}``. NaN/Infinity tokens are refused.
- ``application/vnd.apache.arrow.stream``: an Arrow IPC stream with the hit columns x, y, z,
  energy, time — and, for reconstruction, directly after it a second IPC stream with the track
  columns pt, eta, phi, charge, p, x_calo, y_calo, z_calo, n_layers (numeric, no nulls).
- ``application/x-npz``: a numpy ``.npz`` archive with arrays ``hits`` [N, 5] and ``tracks``
  [T, 9] (float32 or float64).

Work per request is bounded before it is done (``BodyLimits``): a JSON body's nesting and
numbers, an npz archive's members (sizes read from the zip directory before anything is
inflated), an Arrow stream's rows and decompressed size (read from each message's header before
its body is decoded). A client's mistake is a ``BodyError`` that names the limit and the value.

Responses (selected by Accept): JSON (default), or the same binary formats: npz with arrays
``hit_cluster``, ``clusters`` and ``candidates`` (structured), or consecutive Arrow IPC streams
(hit assignments, clusters, candidates — in that order; ``read_arrow_result`` reads them).
"""

from __future__ import annotations

import io
import json
import math
import struct
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from recoserve.client.results import ClusterResult, RecoResult
from recoserve.contract import HIT_FEATURES, TRACK_FEATURES

JSON = "application/json"
ARROW = "application/vnd.apache.arrow.stream"
NPZ = "application/x-npz"
MEDIA_TYPES = (JSON, ARROW, NPZ)


class BodyError(ValueError):
    """A request body that cannot be read; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class BodyLimits:
    """What one request may make the gateway decode (checked before decoding)."""

    max_hits: int = 1_000_000
    max_tracks: int = 100_000
    max_decoded_bytes: int = 256 * 1024 * 1024  # an npz's inflated or Arrow's decompressed size


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _no_constants(token: str) -> float:
    raise BodyError(f"JSON body contains {token}: only finite numbers are accepted")


def parse_json(raw: bytes) -> Any:
    try:
        # Integers parsed as floats: a 400-digit integer becomes inf (refused below as not
        # finite) instead of an arbitrary-precision int that overflows in float conversion.
        return json.loads(raw, parse_constant=_no_constants, parse_int=float)
    except BodyError:
        raise
    except RecursionError:
        raise BodyError("JSON body is nested too deeply", 400) from None
    except (ValueError, UnicodeDecodeError) as err:
        raise BodyError(f"malformed JSON body: {err}", 400) from None


def table_from_json(value: Any, name: str, width: int, required: bool) -> np.ndarray:
    """float32 [N, width] from a JSON list of rows; errors name the field and the row."""
    if value is None:
        if required:
            raise BodyError(f"missing field '{name}' (a list of [{width} numbers] rows)")
        return np.zeros((0, width), np.float32)
    if not isinstance(value, list):
        raise BodyError(f"'{name}' must be a list of rows, got {type(value).__name__}")
    for i, row in enumerate(value):
        if not isinstance(row, list) or len(row) != width:
            raise BodyError(f"'{name}[{i}]' must be a list of {width} numbers")
        for j, item in enumerate(row):
            if isinstance(item, bool) or not isinstance(item, int | float):
                raise BodyError(f"'{name}[{i}][{j}]' must be a number, got {json.dumps(item)}")
            if not math.isfinite(item):
                raise BodyError(f"'{name}[{i}][{j}]' is not finite")
            if abs(item) > FLOAT32_MAX:
                raise BodyError(f"'{name}[{i}][{j}]' = {item:g} is beyond float32's range")
    return np.asarray(value, dtype=np.float32).reshape(-1, width)


def event_from_json(value: Any, where: str = "body") -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(value, dict):
        raise BodyError(f"{where} must be a JSON object with 'hits' (and 'tracks')")
    unknown = set(value) - {"hits", "tracks"}
    if unknown:
        raise BodyError(f"{where} has unknown fields {sorted(unknown)}; allowed: hits, tracks")
    prefix = "" if where == "body" else f"{where}."
    hits = table_from_json(value.get("hits"), f"{prefix}hits", len(HIT_FEATURES), required=True)
    tracks = table_from_json(
        value.get("tracks"), f"{prefix}tracks", len(TRACK_FEATURES), required=False
    )
    return hits, tracks


def events_from_body(
    raw: bytes, content_type: str, batch: bool, limits: BodyLimits | None = None
) -> list[tuple[np.ndarray, ...]]:
    """The events of a request body: one, or the list of a batch request."""
    limits = limits or BodyLimits()
    kind = content_type.split(";")[0].strip().lower()
    if kind == JSON:
        value = parse_json(raw)
        if not batch:
            return [event_from_json(value)]
        if not isinstance(value, dict) or not isinstance(value.get("events"), list):
            raise BodyError('a batch body must be {"events": [event, ...]}')
        return [event_from_json(e, f"events[{i}]") for i, e in enumerate(value["events"])]
    if batch:
        raise BodyError("batch requests take JSON bodies; send binary events one by one", 415)
    if kind == NPZ:
        return [_from_npz(raw, limits)]
    if kind == ARROW:
        return [_from_arrow(raw, limits)]
    raise BodyError(
        f"unsupported Content-Type {content_type!r}; use one of {', '.join(MEDIA_TYPES)}", 415
    )


def _check_npz_sizes(raw: bytes, limits: BodyLimits) -> None:
    """Refuse an archive whose members would inflate beyond the limit (the zip directory holds
    each member's uncompressed size; nothing is inflated to learn it)."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            inflated = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise BodyError(f"unreadable npz body: {err}", 400) from None
    if inflated > limits.max_decoded_bytes:
        raise BodyError(
            f"npz body inflates to {inflated} bytes > limit {limits.max_decoded_bytes}", 413
        )


def _from_npz(raw: bytes, limits: BodyLimits) -> tuple[np.ndarray, np.ndarray]:
    _check_npz_sizes(raw, limits)
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except Exception as err:
        raise BodyError(f"unreadable npz body: {err}", 400) from None
    if "hits" not in arrays:
        raise BodyError("npz body has no array 'hits'")
    out = []
    for name, width in (("hits", len(HIT_FEATURES)), ("tracks", len(TRACK_FEATURES))):
        array = arrays.get(name, np.zeros((0, width), np.float32))
        if array.dtype.kind != "f":
            raise BodyError(f"npz array '{name}' must be float32 or float64, got {array.dtype}")
        if array.ndim != 2 or array.shape[1] != width:
            raise BodyError(
                f"npz array '{name}' must have shape [N, {width}], got {list(array.shape)}"
            )
        out.append(array.astype(np.float32))
    return out[0], out[1]


def _columns(batch: pa.Table, names: tuple[str, ...], what: str) -> np.ndarray:
    missing = [n for n in names if n not in batch.schema.names]
    if missing:
        raise BodyError(f"Arrow {what} batch lacks columns {missing}")
    repeated = sorted({n for n in names if batch.schema.names.count(n) > 1})
    if repeated:
        raise BodyError(f"Arrow {what} batch has the columns {repeated} more than once")
    for name in names:
        kind = batch.schema.field(name).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            raise BodyError(f"Arrow {what} column '{name}' must be numeric, got {kind}")
    try:
        return np.stack(
            [batch.column(n).to_numpy(zero_copy_only=False).astype(np.float32) for n in names],
            axis=1,
        ).reshape(-1, len(names))
    except (pa.ArrowException, ValueError, TypeError) as err:
        raise BodyError(f"Arrow {what} columns must be numeric without nulls: {err}") from None


def _arrow_streams(raw: bytes) -> list[pa.Table]:
    """Tables of consecutive Arrow IPC streams."""
    source = pa.BufferReader(raw)
    tables = []
    while source.tell() < len(raw):
        tables.append(pa.ipc.open_stream(source).read_all())
    return tables


def _flatbuffer_field(buf: bytes, table: int, index: int) -> int | None:
    """Position of field ``index`` of the flatbuffer table at ``table`` (None if absent)."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    vtable_size = struct.unpack_from("<H", buf, vtable)[0]
    if 4 + 2 * index >= vtable_size:
        return None
    offset = struct.unpack_from("<H", buf, vtable + 4 + 2 * index)[0]
    return table + offset if offset else None


def _record_batch_size(metadata: bytes, body: memoryview) -> tuple[int, int]:
    """(rows, decoded bytes) of an IPC record-batch message, from its header (Arrow's
    Message.fbs: Message.header is a RecordBatch {length, nodes, buffers, compression}); a
    compressed buffer starts with its uncompressed length (int64, -1: stored as is)."""
    root = struct.unpack_from("<I", metadata, 0)[0]
    header_field = _flatbuffer_field(metadata, root, 2)
    if header_field is None:
        raise BodyError("Arrow IPC message without a header", 400)
    batch = header_field + struct.unpack_from("<I", metadata, header_field)[0]
    length_field = _flatbuffer_field(metadata, batch, 0)
    rows = struct.unpack_from("<q", metadata, length_field)[0] if length_field else 0
    buffers_field = _flatbuffer_field(metadata, batch, 2)
    compressed = _flatbuffer_field(metadata, batch, 3) is not None
    decoded = 0
    if buffers_field is not None:
        vector = buffers_field + struct.unpack_from("<I", metadata, buffers_field)[0]
        count = struct.unpack_from("<I", metadata, vector)[0]
        for i in range(count):
            offset, length = struct.unpack_from("<qq", metadata, vector + 4 + 16 * i)
            if compressed and length >= 8 and offset + 8 <= len(body):
                size = struct.unpack_from("<q", body, offset)[0]
                decoded += length - 8 if size < 0 else size
            else:
                decoded += length
    return rows, decoded


def _check_arrow_sizes(raw: bytes, limits: BodyLimits) -> None:
    """Walk the IPC messages' headers (no body is decoded) and refuse streams whose rows or
    decompressed size exceed the limits, and dictionary batches (no column needs one)."""
    max_rows = limits.max_hits + limits.max_tracks
    rows_total = decoded_total = 0
    try:
        source = pa.BufferReader(raw)
        while source.tell() < len(raw):  # consecutive streams (hits, then tracks)
            reader = pa.ipc.MessageReader.open_stream(source)
            while True:
                try:
                    message = reader.read_next_message()
                except StopIteration:
                    break
                if message.type == "dictionary batch":
                    raise BodyError("Arrow dictionary batches are not accepted: send plain columns")
                if message.type != "record batch":
                    continue
                body = memoryview(message.body) if message.body is not None else memoryview(b"")
                rows, decoded = _record_batch_size(message.metadata.to_pybytes(), body)
                rows_total += rows
                decoded_total += decoded
                if rows_total > max_rows:
                    raise BodyError(f"Arrow body holds {rows_total} rows > limit {max_rows}", 413)
                if decoded_total > limits.max_decoded_bytes:
                    raise BodyError(
                        f"Arrow body decodes to {decoded_total} bytes > limit "
                        f"{limits.max_decoded_bytes}",
                        413,
                    )
    except BodyError:
        raise
    except (pa.ArrowException, OSError, struct.error, ValueError) as err:
        raise BodyError(f"unreadable Arrow IPC stream: {err}", 400) from None


def _from_arrow(raw: bytes, limits: BodyLimits) -> tuple[np.ndarray, np.ndarray]:
    _check_arrow_sizes(raw, limits)
    try:
        tables = _arrow_streams(raw)
    except (pa.ArrowException, OSError) as err:
        raise BodyError(f"unreadable Arrow IPC stream: {err}", 400) from None
    if not tables or len(tables) > 2:
        raise BodyError(
            f"Arrow body must hold 1 or 2 IPC streams (hits, tracks), got {len(tables)}"
        )
    hits = _columns(tables[0], HIT_FEATURES, "hits")
    tracks = (
        _columns(tables[1], TRACK_FEATURES, "tracks")
        if len(tables) > 1
        else np.zeros((0, 9), np.float32)
    )
    return hits, tracks


def result_to_json(result: ClusterResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "hit_cluster": result.hit_cluster.tolist(),
        "clusters": _records(result.clusters),
    }
    if isinstance(result, RecoResult):
        out["candidates"] = _records(result.candidates)
    return out


def _records(array: np.ndarray) -> list[dict[str, Any]]:
    names = array.dtype.names or ()
    return [dict(zip(names, row.tolist(), strict=True)) for row in array]


def result_to_npz(result: ClusterResult) -> bytes:
    buffer = io.BytesIO()
    arrays = {"hit_cluster": result.hit_cluster, "clusters": result.clusters}
    if isinstance(result, RecoResult):
        arrays["candidates"] = result.candidates
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def result_to_arrow(result: ClusterResult) -> bytes:
    """Consecutive Arrow IPC streams: hit assignments, clusters[, candidates]."""
    tables = [
        pa.table({"hit_cluster": result.hit_cluster}),
        pa.table({n: result.clusters[n] for n in result.clusters.dtype.names or ()}),
    ]
    if isinstance(result, RecoResult):
        tables.append(
            pa.table({n: result.candidates[n] for n in result.candidates.dtype.names or ()})
        )
    out = io.BytesIO()
    for table in tables:
        with pa.ipc.new_stream(out, table.schema) as writer:
            writer.write_table(table)
    return out.getvalue()


def read_arrow_result(raw: bytes) -> list[pa.Table]:
    """The tables of an Arrow response (hit assignments, clusters[, candidates])."""
    return _arrow_streams(raw)
