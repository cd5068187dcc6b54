"""The command line, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from recoserve.cli import BENCHMARK_DIR, app
from recoserve.events.parquet import read_events, read_metadata

runner = CliRunner()
DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_simulate_is_deterministic_and_resumable_by_event_id(tmp_path: Path) -> None:
    args = ["simulate", "-n", "3", "-p", "5", "--seed", "7"]
    one = runner.invoke(app, [*args, "-o", str(tmp_path / "a.parquet")])
    two = runner.invoke(app, [*args, "-o", str(tmp_path / "b.parquet")])
    assert one.exit_code == 0 and two.exit_code == 0, one.output
    a, b = read_events(tmp_path / "a.parquet"), read_events(tmp_path / "b.parquet")
    assert [e.event_id for e in a] == [0, 1, 2]
    assert all(x.equals(y) for x, y in zip(a, b, strict=True))
    tail = runner.invoke(
        app, [*args[:2], "1", *args[3:], "--first-event", "2", "-o", str(tmp_path / "c.parquet")]
    )
    assert tail.exit_code == 0
    assert read_events(tmp_path / "c.parquet")[0].equals(a[2])
    assert read_metadata(tmp_path / "a.parquet")["seed"] == "7"


def test_console_script_runs(tmp_path: Path) -> None:
    out = tmp_path / "e.parquet"
    exe = Path(sys.executable).parent / "recoserve"
    done = subprocess.run(
        [str(exe), "simulate", "--events", "2", "--particles", "4", "--seed", "1", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 2 events" in done.stderr
    info = subprocess.run([str(exe), "info", str(out)], capture_output=True, text=True, timeout=60)
    assert info.returncode == 0 and "2 events" in info.stdout


def test_bad_options_fail_with_a_message(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["simulate", "--species", "graviton", "-o", str(tmp_path / "x.parquet")]
    )
    assert result.exit_code == 2 and "unknown species" in result.output
    result = runner.invoke(app, ["info", str(tmp_path / "missing.parquet")])
    assert result.exit_code == 2 and "no such event file" in result.output
    result = runner.invoke(app, ["simulate", "--events", "0", "-o", str(tmp_path / "x.parquet")])
    assert result.exit_code == 2


def test_display_and_resolution_write_pngs(tmp_path: Path) -> None:
    events = tmp_path / "d.parquet"
    assert runner.invoke(app, ["simulate", "-n", "1", "-p", "20", "-o", str(events)]).exit_code == 0
    png = tmp_path / "display.png"
    result = runner.invoke(app, ["display", str(events), "-o", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    res_png, res_json = tmp_path / "res.png", tmp_path / "res.json"
    result = runner.invoke(
        app,
        [
            "resolution",
            "-o",
            str(res_png),
            "--json",
            str(res_json),
            "--species",
            "gamma",
            "--energies",
            "20,50,120",
            "-n",
            "40",
        ],
    )
    assert result.exit_code == 0, result.output
    scan = json.loads(res_json.read_text())["scan"]["gamma"]
    assert len(scan["points"]) == 3 and 0.1 < scan["fit"]["stochastic"] < 0.4
    assert res_png.read_bytes()[:4] == b"\x89PNG"


def test_geometry_docs_match_the_code() -> None:
    result = runner.invoke(app, ["geometry", "--markdown"])
    assert result.exit_code == 0
    assert result.output.strip() in (DOCS / "geometry.md").read_text()


def test_simulate_a_benchmark_class_and_the_legacy_detector(tmp_path: Path) -> None:
    from recoserve.sim.classes import event_class

    out = tmp_path / "dense.parquet"
    done = runner.invoke(app, ["simulate", "--class", "dense", "--split", "validation", "-n", "1",
                               "-o", str(out)])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert read_events(out)[0].equals(event_class("dense").event("validation", 0))
    legacy = tmp_path / "legacy.parquet"
    done = runner.invoke(app, ["simulate", "--legacy-detector", "-n", "1", "-p", "5",
                               "-o", str(legacy)])  # fmt: skip
    assert done.exit_code == 0 and read_metadata(legacy)["detector"] == "legacy"
    assert (read_events(legacy)[0].hits.time >= 0).all()  # every hit timed
    bad = runner.invoke(app, ["simulate", "--noise-level", "middle", "-o", str(legacy)])
    assert bad.exit_code != 0 and "unknown noise scenario" in bad.output


def test_evaluate_clustering_and_chain_tune_on_validation_then_report(tmp_path: Path) -> None:
    """The benchmark end to end on a few events, tunings written to a temporary store."""
    tunings, results = tmp_path / "tunings", tmp_path / "results"
    common = ["--class", "jets", "--events", "2", "--validation-events", "2",
              "--tunings", str(tunings), "-o", str(results)]  # fmt: skip
    done = runner.invoke(app, ["evaluate", "clustering", *common])
    assert done.exit_code == 0, done.output
    clue = json.loads((tunings / "clue" / "jets.json").read_text())
    assert clue["events"] == 2 and all(clue["grid"]["interior"].values())
    report = json.loads((results / "clustering_benchmark.json").read_text())
    block = report["classes"]["jets"]
    assert block["events"] == 2 and block["clue_params"] == clue["params"]
    assert {"network", "clue", "network_legacy_truth", "clue_legacy_truth"} <= set(block)
    assert (results / "clustering_jets.png").stat().st_size > 10_000

    chains = "clue+rule_pf,network+mlpf,perfect+rule_pf"
    done = runner.invoke(app, ["evaluate", "chain", *common, "--chains", chains])
    assert done.exit_code == 0, done.output
    chain = json.loads((results / "chain_jets.json").read_text())
    assert list(chain["chains"]) == chains.split(",")
    assert chain["clue_params"] == clue["params"]  # the classical chain uses the tuned CLUE
    calibrations = json.loads((tunings / "pf" / "jets.json").read_text())
    assert set(calibrations) == {"clue", "perfect"}  # fit per clustering feeding the rule PF
    assert (results / "chain_jets.png").stat().st_size > 10_000
    bad = runner.invoke(app, ["evaluate", "chain", *common, "--chains", "clue+nothing"])
    assert bad.exit_code != 0 and "unknown chain" in bad.output

    # Any events file, with the tunings of a class (here the ones just made).
    events = tmp_path / "gen.parquet"
    done = runner.invoke(app, ["simulate", "--class", "jets", "-n", "2", "--first-event", "50",
                               "-o", str(events)])  # fmt: skip
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["evaluate", "clustering", *common[2:], "--input", str(events),
                               "--tuned-on", "jets"])  # fmt: skip
    assert done.exit_code == 0, done.output
    report = json.loads((results / "clustering_benchmark.json").read_text())
    assert {"jets", "file:gen.parquet"} <= set(report["classes"])
    assert report["classes"]["file:gen.parquet"]["events"] == 2
    done = runner.invoke(app, ["evaluate", "chain", *common, "--input", str(events),
                               "--chains", "clue+rule_pf"])  # fmt: skip
    assert done.exit_code == 0, done.output
    combined = json.loads((results / "chain_benchmark.json").read_text())
    assert set(combined["classes"]) == {"jets", "file:gen.parquet"}
    assert combined["classes"]["file:gen.parquet"]["tuned_on"] == "jets"


def test_commands_do_not_depend_on_the_current_directory(tmp_path: Path) -> None:
    """From any directory, `export clustering` finds the committed checkpoint, and the
    evaluate commands' results go under the current directory, not into the source tree."""
    done = subprocess.run(
        [sys.executable, "-m", "recoserve.cli", "export", "clustering", "-o", "out"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "gravnet_oc.onnx").exists()
    assert not BENCHMARK_DIR.is_absolute() and BENCHMARK_DIR.parts[0] != "docs"


def test_json_outputs_never_hold_infinity_or_nan() -> None:
    from recoserve.cli import _strict_json

    text = _strict_json({"fit": {"a": float("inf"), "b": [1.5, float("nan")]}})
    assert json.loads(text) == {"fit": {"a": None, "b": [1.5, None]}}
    assert "Infinity" not in text and "NaN" not in text


def test_info_on_a_file_without_truth_says_so(tmp_path: Path) -> None:
    from recoserve.events.model import Event, Particles
    from recoserve.events.parquet import read_events, write_events
    from recoserve.events.root import write_root

    simulated = tmp_path / "events.parquet"
    done = runner.invoke(app, ["simulate", "-n", "2", "-p", "5", "-o", str(simulated)])
    assert done.exit_code == 0
    nothing = Particles.from_columns({n: np.zeros(0, t) for n, t in Particles.SCHEMA.items()})
    no_truth = [Event(e.event_id, e.hits, e.tracks, nothing) for e in read_events(simulated)]
    for path in (tmp_path / "data.parquet", tmp_path / "data.root"):
        (write_events if path.suffix == ".parquet" else write_root)(path, no_truth)
        done = runner.invoke(app, ["info", str(path)])
        assert done.exit_code == 0, done.output
        assert "no truth in this file" in " ".join(done.output.split())


def test_generator_input_refuses_gun_options(tmp_path: Path) -> None:
    hepmc = tmp_path / "gen.parquet"
    done = runner.invoke(app, ["simulate", "--from", str(hepmc), "--jets", "2", "-o",
                               str(tmp_path / "x.parquet")])  # fmt: skip
    assert done.exit_code != 0 and "--jets and --class do not apply" in " ".join(
        done.output.split()
    )


def test_a_foreign_file_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    candidates = tmp_path / "candidates.parquet"  # what `recoserve reconstruct` writes
    pq.write_table(pa.table({"index": [0], "event_id": [7], "candidates": [[]]}), candidates)
    done = runner.invoke(app, ["info", str(candidates)])
    assert done.exit_code == 2 and "Traceback" not in done.output
    text = " ".join(done.output.split())
    assert "not a recoserve event file (the output of `recoserve reconstruct`" in text


def test_reconstruct_takes_the_clients_tls_and_credential_options(tmp_path: Path) -> None:
    """The CLI's names are the client's; a missing certificate file is one line."""
    events = tmp_path / "events.parquet"
    assert runner.invoke(app, ["simulate", "-n", "1", "-p", "5", "-o", str(events)]).exit_code == 0
    done = runner.invoke(
        app,
        ["reconstruct", str(events), "-o", str(tmp_path / "out.parquet"), "--ssl",
         "--root-certificates", str(tmp_path / "missing-ca.pem"), "--api-key", "k"],
    )  # fmt: skip
    assert done.exit_code == 2 and "Traceback" not in done.output
    assert "root_certificates: no such file" in " ".join(done.output.split())
    assert not (tmp_path / "out.parquet").exists()
