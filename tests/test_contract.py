"""The one tensor contract (recoserve/contract.py) against everything that speaks it: the model
configs Triton loads, what a running Triton reports, the client, the gateway and the docs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from recoserve import contract
from recoserve.client import sync
from recoserve.client.results import CLUSTER_DTYPE, decode_result
from recoserve.server import gateway
from recoserve.server.triton import TritonServer

ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_tensor_table_is_generated_from_the_contract() -> None:
    docs = (ROOT / "docs" / "serving.md").read_text()
    start, end = contract.DOCS_MARKERS
    table = docs.split(start, 1)[1].split(end, 1)[0].strip()
    assert table == contract.tensor_table_markdown(), (
        "docs/serving.md is stale: run `python -m recoserve.contract docs/serving.md`"
    )


def test_every_model_config_declares_the_contracts_tensors(repository: Path) -> None:
    for model, (inputs, outputs) in contract.MODEL_TENSORS.items():
        config = text_format.Parse(
            (repository / model / "config.pbtxt").read_text(), pb.ModelConfig()
        )
        for declared, specs in ((config.input, inputs), (config.output, outputs)):
            assert [t.name for t in declared] == [s.name for s in specs], model
            for tensor, spec in zip(declared, specs, strict=True):
                assert pb.DataType.Name(tensor.data_type) == f"TYPE_{spec.dtype}", spec.name
                assert tuple(tensor.dims) == spec.dims, spec.name
                assert getattr(tensor, "allow_ragged_batch", False) == spec.ragged, spec.name


def test_a_running_triton_reports_the_contract(server: TritonServer) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        for model in contract.PUBLIC_MODELS:
            meta = client.get_model_metadata(model, as_json=True)
            inputs, outputs = contract.MODEL_TENSORS[model]
            for reported, specs in ((meta["inputs"], inputs), (meta["outputs"], outputs)):
                assert [
                    (t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in reported
                ] == [
                    (s.name, s.dtype, [-1, *s.dims])
                    for s in specs  # the batch dimension first
                ], model
    finally:
        client.close()


def test_the_client_and_the_gateway_use_the_contract() -> None:
    assert contract.output_names("hgcal_clustering") == sync.CLUSTER_OUTPUTS
    assert contract.output_names("event_reco") == sync.RECO_OUTPUTS
    assert CLUSTER_DTYPE.names == contract.CLUSTER_COLUMNS
    assert gateway.HIT_ROW["minItems"] == gateway.HIT_ROW["maxItems"] == len(contract.HIT_FEATURES)
    assert gateway.TRACK_ROW["maxItems"] == len(contract.TRACK_FEATURES)
    # a candidate table written by the server side decodes to the same structured array
    rng = np.random.default_rng(1)
    candidates = np.zeros(4, dtype=contract.CANDIDATE_DTYPE)
    for name in contract.CANDIDATE_COLUMNS:
        candidates[name] = rng.integers(-20, 20, 4)
    outputs = {
        "HIT_CLUSTER": np.array([0, -1]),
        "CLUSTERS": np.zeros((0, len(contract.CLUSTER_COLUMNS)), np.float32),
        "CANDIDATES": contract.candidate_table(candidates),
    }
    decoded = decode_result(outputs, "test")
    assert decoded.candidates is not None
    assert decoded.candidates.tobytes() == candidates.tobytes()


def _imports(path: Path) -> set[str]:
    """Every recoserve module a source file imports, at the top or inside a function."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.startswith("recoserve")}


def test_dependencies_point_inward() -> None:
    """The client imports neither the simulation, the training, the networks nor the server;
    nothing but the CLI (the application's entry) imports the training."""
    package = ROOT / "recoserve"
    for path in sorted(package.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        imported = _imports(path)
        if module.startswith("recoserve.client"):
            outward = {
                m for m in imported if m.split(".")[1:2] in (["sim"], ["train"], ["nn"], ["server"])
            }
            assert not outward, f"{module} imports {outward}"
        if not module.startswith(("recoserve.train", "recoserve.cli")):
            assert not {m for m in imported if m.startswith("recoserve.train")}, module
