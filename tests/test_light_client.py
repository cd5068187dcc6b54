"""The light client for real: the wheel installed with only its base dependencies into a fresh
virtual environment, reconstructing events against a served model (the test's Triton comes from
the full environment).

The environment is built once per module (a wheel build and a pip install of numpy, pyarrow,
tritonclient[grpc], typer and rich: about a minute from the package cache).
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from recoserve.client import RecoClient
from recoserve.events.parquet import write_events
from recoserve.server.triton import TritonServer

ROOT = Path(__file__).resolve().parents[1]
SERVER_ONLY = ("torch", "onnxruntime", "onnx", "pytriton", "scipy", "fastapi", "uproot")


@pytest.fixture(scope="module")
def light_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment holding the recoserve wheel and its base dependencies only."""
    work = tmp_path_factory.mktemp("light")
    wheels = work / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels),
         str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("recoserve-*.whl")
    env = work / "venv"
    venv.create(env, with_pip=True)
    install = subprocess.run(
        [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    return env


def _run(env: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(env / "bin" / args[0]), *args[1:]], capture_output=True, text=True, timeout=600,
        cwd=cwd,
    )  # fmt: skip


def test_the_light_install_has_no_server_no_torch_no_simulation(
    light_env: Path, tmp_path: Path
) -> None:
    probe = "import importlib.util, json; print(json.dumps({m: importlib.util.find_spec(m) is not None for m in %r}))"  # noqa: E501
    found = _run(light_env, "python", "-c", probe % (SERVER_ONLY,), cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout) == {m: False for m in SERVER_ONLY}
    assert not list(light_env.rglob("tritonserver"))  # no server binary anywhere in it


def test_the_light_client_reconstructs_like_the_full_one(
    light_env: Path, server: TritonServer, reference_events: list, tmp_path: Path
) -> None:
    source = tmp_path / "events.parquet"
    write_events(source, reference_events[:2])
    output = tmp_path / "out.parquet"
    done = _run(
        light_env, "recoserve", "reconstruct", str(source), "-o", str(output),
        "--server", server.grpc_url, "--clusters", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = pq.read_table(output)
    assert table.column("index").to_pylist() == [0, 1]
    with RecoClient(server.grpc_url, shared_memory="never") as client:
        for i, event in enumerate(reference_events[:2]):
            full = client.reconstruct(event)
            light_candidates = table.column("candidates")[i].as_py()
            assert len(light_candidates) == len(full.candidates)
            assert [c["pdg"] for c in light_candidates] == full.candidates["pdg"].tolist()
            np.testing.assert_allclose(
                [c["energy"] for c in light_candidates], full.candidates["energy"], rtol=1e-5
            )
            assert table.column("hit_cluster")[i].as_py() == full.hit_cluster.tolist()


def test_the_light_client_library_sends_events(
    light_env: Path, server: TritonServer, reference_events: list, tmp_path: Path
) -> None:
    source = tmp_path / "events.parquet"
    write_events(source, reference_events[:1])
    script = (
        "import sys\n"
        "from recoserve.client import RecoClient\n"
        "from recoserve.events import read_events\n"
        "(event,) = read_events(sys.argv[1])\n"
        "with RecoClient(sys.argv[2]) as client:\n"
        "    print(len(client.reconstruct(event).candidates), len(client.cluster(event.hits.features()).clusters))\n"  # noqa: E501
    )
    done = _run(light_env, "python", "-c", script, str(source), server.grpc_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    n_candidates, n_clusters = (int(v) for v in done.stdout.split())
    with RecoClient(server.grpc_url, shared_memory="never") as client:
        assert n_candidates == len(client.reconstruct(reference_events[0]).candidates)
        assert n_clusters == len(client.cluster(reference_events[0].hits.features()).clusters)


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (("serve",), "serve"),
        (("simulate", "-n", "1", "-o", "x.parquet"), "sim"),
        (("train", "clustering"), "train"),
    ],
)
def test_a_missing_extra_is_one_line_that_says_what_to_install(
    light_env: Path, tmp_path: Path, args: tuple[str, ...], extra: str
) -> None:
    done = _run(light_env, "recoserve", *args, cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"pip install 'recoserve[{extra}]'" in lines[0]
    assert f"`recoserve {args[0]}`" in lines[0]


def test_importing_a_server_module_names_its_extra(light_env: Path, tmp_path: Path) -> None:
    done = _run(light_env, "python", "-c", "import recoserve.inprocess", cwd=tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("recoserve.extras.MissingExtra:")
    assert "pip install 'recoserve[serve]'" in last
