"""The ``recoserve`` command line."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from recoserve.events.model import Event
from recoserve.extras import MissingExtra, extra_of_module
from recoserve.metrics.chains import ALL_CHAINS, PF_LEVEL_CHAINS
from recoserve.metrics.tuning_store import CHECKPOINTS
from recoserve.sim.particles import DEFAULT_GUN_SPECIES, GunConfig

# Defaults that do not depend on the current directory (the committed checkpoints), and
# outputs that land in the current directory, never in the source tree unless asked
# (`make evaluate` writes docs/results/benchmark on purpose).
CLUSTERING_CHECKPOINT = CHECKPOINTS / "clustering" / "gravnet_oc.pt"
MLPF_CHECKPOINT = CHECKPOINTS / "mlpf" / "mlpf.pt"
_BenchmarkDir = Annotated[
    Path, typer.Option("-o", "--output-dir", help="Where the JSON and figures go.")
]
BENCHMARK_DIR = Path("recoserve-results/benchmark")
_ClusteringCheckpoint = Annotated[
    Path, typer.Option(help="Clustering checkpoint to serve (your own model).")
]
_MlpfCheckpoint = Annotated[Path, typer.Option(help="MLPF checkpoint to serve (your own model).")]

app = typer.Typer(
    help="recoserve: particle reconstruction as a service (simulation, event files, plots).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console(stderr=True)

TreeOption = Annotated[str, typer.Option(help="TTree name, for ROOT input.")]
MapOption = Annotated[
    list[str] | None,
    typer.Option(
        "--map", help="ROOT column mapping KEY=BRANCH, e.g. hits.x=RecHit_x (repeatable)."
    ),
]


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class _Stopped(BaseException):
    """A stop signal (SIGTERM, SIGHUP, SIGINT) turned into an exception, so that every server
    a command started is stopped by its ``finally`` blocks before the process exits. Not a
    KeyboardInterrupt: uvicorn swallows those, and the exit status would be lost."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum: int, _frame: object) -> None:
    raise _Stopped(signum)


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """SIGTERM (batch systems, systemd, Kubernetes, ``timeout``), SIGHUP and SIGINT all stop
    the command cleanly; it then exits with the conventional status 128 + signal number."""
    previous = {s: signal.signal(s, _raise_stopped) for s in STOP_SIGNALS}
    try:
        yield
    except _Stopped as stop:
        console.print(f"stopped by {signal.Signals(stop.signum).name}")
        raise typer.Exit(code=128 + stop.signum) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    return value


def _strict_json(value: Any, indent: int = 1) -> str:
    """JSON that other tools can read: a non-finite float (a fit that did not converge) is
    null, never Python's Infinity or NaN tokens."""
    return json.dumps(_finite_or_none(value), indent=indent, allow_nan=False) + "\n"


def _fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=2)


@app.command()
def simulate(
    output: Annotated[Path, typer.Option("-o", "--output", help="Parquet file to write.")],
    events: Annotated[
        int | None,
        typer.Option(
            "--events", "-n", min=1, help="Number of events (default: 10, or all of --from)."
        ),
    ] = None,
    particles: Annotated[
        int, typer.Option("--particles", "-p", min=0, help="Particles per event (particle gun).")
    ] = 100,
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives the same events.")
    ] = 0,
    first_event: Annotated[int, typer.Option(min=0, help="event_id of the first event.")] = 0,
    species: Annotated[
        str, typer.Option(help="Comma-separated species: " + ",".join(DEFAULT_GUN_SPECIES))
    ] = ",".join(DEFAULT_GUN_SPECIES),
    energy_min: Annotated[float, typer.Option(help="Minimum particle energy, GeV.")] = 20.0,
    energy_max: Annotated[float, typer.Option(help="Maximum particle energy, GeV.")] = 200.0,
    eta_min: Annotated[float, typer.Option(help="Minimum |eta| (>= 1.5).")] = 1.5,
    eta_max: Annotated[float, typer.Option(help="Maximum |eta| (<= 3.0).")] = 3.0,
    jets: Annotated[
        int, typer.Option(min=0, help="Use the jet gun with this many jets per event.")
    ] = 0,
    jet_energy_min: Annotated[float, typer.Option(help="Minimum jet energy, GeV.")] = 100.0,
    jet_energy_max: Annotated[float, typer.Option(help="Maximum jet energy, GeV.")] = 400.0,
    from_file: Annotated[
        Path | None,
        typer.Option("--from", help="Generator events: HepMC3 file or Parquet particle table."),
    ] = None,
    pileup: Annotated[
        int, typer.Option(min=0, help="Pileup interactions overlaid on every event.")
    ] = 0,
    noise: Annotated[bool, typer.Option(help="Add electronic-noise hits.")] = True,
    noise_level: Annotated[
        str, typer.Option(help="Noise scenario: start or end of detector life.")
    ] = "start",
    legacy_detector: Annotated[
        bool,
        typer.Option(
            help="The earlier, easier detector model (symmetric hadron showers, "
            "~4 sigma noise thresholds, every hit timed), for comparison."
        ),
    ] = False,
    log_uniform: Annotated[
        bool, typer.Option(help="Particle-gun energies uniform in log(E).")
    ] = False,
    event_class: Annotated[
        str | None,
        typer.Option(
            "--class",
            help="A benchmark class (gun, dense, jets, jets_pu140): its "
            "events of --split, replacing the gun options.",
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="With --class: train, validation or test.")] = "test",
) -> None:
    """Simulate events (particle gun, jet gun, a benchmark class or a generator file, plus
    pileup) to Parquet."""
    from dataclasses import replace

    from recoserve.events.parquet import EventWriter
    from recoserve.sim.classes import event_class as event_class_of
    from recoserve.sim.digitize import ReadoutConfig
    from recoserve.sim.generator import GeneratorReport, count_acceptance, read_generator_file
    from recoserve.sim.jets import JetGunConfig
    from recoserve.sim.pileup import PileupConfig
    from recoserve.sim.simulator import SimConfig, Simulator

    if from_file is not None and (jets or event_class):
        raise _fail(
            "--from takes the particles of the generator file; --jets and --class do not apply "
            "to it (pileup and the detector options do)"
        )
    try:
        gun = GunConfig(
            n_particles=particles,
            species=tuple(s.strip() for s in species.split(",") if s.strip()),
            energy_min=energy_min,
            energy_max=energy_max,
            eta_min=eta_min,
            eta_max=eta_max,
            log_uniform=log_uniform,
        )
        jet_gun = (
            JetGunConfig(n_jets=jets, energy_min=jet_energy_min, energy_max=jet_energy_max)
            if jets
            else None
        )
        if legacy_detector:
            config = SimConfig.legacy(
                gun=gun, noise_hits=noise, pileup=PileupConfig(pileup), jets=jet_gun
            )
        else:
            config = SimConfig(
                gun=gun, readout=ReadoutConfig.for_scenario(noise_level, noise_hits=noise),
                pileup=PileupConfig(pileup), jets=jet_gun,
            )  # fmt: skip
        chosen = event_class_of(event_class) if event_class else None
        if chosen is not None:
            config = replace(chosen.config(legacy_detector, noise_level), readout=config.readout)
    except ValueError as err:
        raise _fail(str(err)) from None
    sim = Simulator(config)
    report = GeneratorReport()
    if from_file is not None:
        try:
            source = read_generator_file(from_file, report)
        except FileNotFoundError as err:
            raise _fail(str(err)) from None
        stream: Iterator[Event] = (
            sim.from_generator(gen, seed, i)
            for i, gen in enumerate(source)
            if events is None or i < events
        )
        generator = f"generator file {from_file}"
        total = events
    elif chosen is not None:
        n = events or 10
        stream = (chosen.event(split, i, sim) for i in range(first_event, first_event + n))
        generator = f"recoserve benchmark class {chosen.name} ({split})"
        seed = chosen.seeds.of(split)
        total = n
    else:
        n = events or 10
        stream = sim.events(n, seed, first_event)
        generator = f"recoserve {'jet' if jet_gun else 'particle'} gun"
        total = n
    metadata = {
        "generator": generator,
        "seed": str(seed),
        "first_event": str(first_event),
        "gun": json.dumps(jet_gun.__dict__ if jet_gun else gun.__dict__),
        "pileup": str(config.pileup.interactions),
        "noise_hits": str(noise),
        "detector": "legacy" if legacy_detector else f"realistic, {noise_level} of life",
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    n_hits: list[int] = []
    start = time.perf_counter()
    with (
        EventWriter(output, metadata) as writer,
        Progress(
            TextColumn("[bold]simulate"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:.1f} events/s"),
            TimeRemainingColumn(),
            console=console,
        ) as progress,
    ):
        task = progress.add_task("simulate", total=total, rate=0.0)
        try:
            for event in stream:
                if from_file is not None:
                    count_acceptance(event.particles, report)
                writer.write(event)
                n_hits.append(len(event.hits))
                progress.update(task, advance=1, rate=len(n_hits) / (time.perf_counter() - start))
        except (OSError, KeyError, ValueError) as err:
            raise _fail(f"{from_file}: {err}") from None
    elapsed = time.perf_counter() - start
    if not n_hits:
        raise _fail(f"no events in {from_file}")
    console.print(
        f"wrote {len(n_hits)} events to {output} in {elapsed:.1f} s: "
        f"{np.mean(n_hits):.0f} hits/event (min {min(n_hits)}, max {max(n_hits)})"
    )
    if from_file is not None:
        summary = report.summary()
        console.print("generator particles: " + json.dumps(summary))
        (output.parent / (output.name + ".report.json")).write_text(json.dumps(summary, indent=2))


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="Event file (.parquet or .root).")],
    tree: TreeOption = "events",
    mapping: MapOption = None,
) -> None:
    """Summarise an event file: events, hits, tracks and particles per event."""
    from recoserve.events.io import open_events
    from recoserve.events.root import parse_mapping

    try:
        n, events = open_events(path, tree, parse_mapping(mapping or []))
    except (OSError, ValueError, KeyError) as err:
        raise _fail(str(err)) from None
    counts = np.array(
        [
            (len(e.hits), len(e.tracks), len(e.particles), int((e.hits.truth_particle < 0).sum()))
            for e in events
        ]
    ).reshape(-1, 4)
    out = Console()
    out.print(f"{path}: {n} events", soft_wrap=True)
    table = Table()
    for column in ("per event", "mean", "min", "max"):
        table.add_column(column, justify="right")
    has_truth = bool(len(counts)) and counts[:, 2].sum() > 0
    for k, label in enumerate(("hits", "tracks", "particles", "noise hits")):
        col = counts[:, k] if len(counts) else np.zeros(1)
        if label == "noise hits" and not has_truth:
            table.add_row(label, "no truth in this file (no particles)", "", "")
            continue
        table.add_row(label, f"{col.mean():.1f}", str(col.min()), str(col.max()))
    out.print(table)


@app.command()
def display(
    path: Annotated[Path, typer.Argument(help="Event file (.parquet or .root).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG file to write.")],
    event: Annotated[int, typer.Option(min=0, help="Position of the event in the file.")] = 0,
    pileup_grey: Annotated[
        bool, typer.Option(help="Draw pileup hits in one pale colour (hard scatter stands out).")
    ] = False,
    tree: TreeOption = "events",
    mapping: MapOption = None,
) -> None:
    """Draw an event display (x-y of both endcaps, r-z) coloured by truth particle, to PNG."""
    from recoserve.events.io import read_event
    from recoserve.events.root import parse_mapping
    from recoserve.plotting.display import draw_event

    try:
        ev = read_event(path, event, tree, parse_mapping(mapping or []))
    except (OSError, ValueError, KeyError, IndexError) as err:
        raise _fail(str(err)) from None
    console.print(f"wrote {draw_event(ev, output, pileup_grey=pileup_grey)}")


@app.command()
def resolution(
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG file to write.")],
    json_output: Annotated[
        Path | None, typer.Option("--json", help="Also write the numbers as JSON.")
    ] = None,
    species: Annotated[str, typer.Option(help="Comma-separated species.")] = "gamma,e-,pi+,K0L",
    energies: Annotated[
        str, typer.Option(help="Comma-separated energies, GeV.")
    ] = "10,20,50,100,200",
    events: Annotated[int, typer.Option("--events", "-n", min=10, help="Events per point.")] = 300,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
) -> None:
    """Single-particle response and energy-resolution curves (with a/sqrt(E) (+) c fits), to PNG."""
    from recoserve.plotting.resolution import draw_resolution
    from recoserve.sim.validation import resolution_scan

    names = [s.strip() for s in species.split(",") if s.strip()]
    try:
        grid = [float(e) for e in energies.split(",")]
        scan = resolution_scan(names, grid, events, seed)
    except ValueError as err:
        raise _fail(str(err)) from None
    draw_resolution(scan, output)
    if json_output:
        json_output.parent.mkdir(parents=True, exist_ok=True)
        json_output.write_text(
            _strict_json({"events_per_point": events, "seed": seed, "scan": scan}, indent=2)
        )
    for name, result in scan.items():
        fit = result["fit"]
        assert isinstance(fit, dict)
        console.print(
            f"{name}: {100 * fit['stochastic']:.1f}%/sqrt(E) (+) {100 * fit['constant']:.2f}%"
        )
    console.print(f"wrote {output}")


@app.command()
def profiles(
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG file to write.")],
    json_output: Annotated[
        Path | None, typer.Option("--json", help="Also write the numbers as JSON.")
    ] = None,
    species: Annotated[str, typer.Option(help="Comma-separated species.")] = "e-,pi+",
    energy: Annotated[float, typer.Option(help="Particle energy, GeV.")] = 50.0,
    events: Annotated[int, typer.Option("--events", "-n", min=5, help="Events per curve.")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
) -> None:
    """Longitudinal and lateral shower profiles, realistic vs legacy detector model, to PNG."""
    from recoserve.plotting.resolution import draw_profiles
    from recoserve.sim.validation import shower_profiles

    names = [s.strip() for s in species.split(",") if s.strip()]
    try:
        result = {
            name: {
                model: shower_profiles(name, energy, events, seed, legacy=model == "legacy")
                for model in ("realistic", "legacy")
            }
            for name in names
        }
    except ValueError as err:
        raise _fail(str(err)) from None
    draw_profiles(result, energy, output)
    if json_output:
        json_output.parent.mkdir(parents=True, exist_ok=True)
        summary = {"energy": energy, "events": events, "seed": seed, "profiles": result}
        json_output.write_text(json.dumps(summary, indent=1) + "\n")
    for name, models in result.items():
        for model, profile in models.items():
            console.print(
                f"{name} {model}: asymmetry beyond 5 cm {profile['asymmetry_beyond_5cm'][0]:.3f}"
            )
    console.print(f"wrote {output}")


@app.command("classes")
def classes_command() -> None:
    """The benchmark's event classes and their train / validation / test seeds (markdown)."""
    from recoserve.sim.classes import classes_markdown

    print(classes_markdown())


@app.command()
def multiplicity(
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG file to write.")],
    json_output: Annotated[
        Path | None, typer.Option("--json", help="Also write the numbers as JSON.")
    ] = None,
    pileups: Annotated[
        str, typer.Option(help="Comma-separated pileup values.")
    ] = "0,50,100,140,200",
    events: Annotated[int, typer.Option("--events", "-n", min=1, help="Events per point.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
) -> None:
    """Hit multiplicity of jet-gun events vs the number of pileup interactions, to PNG."""
    from recoserve.plotting.resolution import draw_multiplicity
    from recoserve.sim.validation import multiplicity_vs_pileup

    rows = multiplicity_vs_pileup([int(p) for p in pileups.split(",")], events, seed)
    draw_multiplicity(rows, output)
    if json_output:
        json_output.write_text(json.dumps(rows, indent=2) + "\n")
    for row in rows:
        console.print(f"pileup {row['pileup']:>4}: {row['hits_mean']:.0f} hits/event")


@app.command()
def geometry(
    markdown: Annotated[bool, typer.Option(help="Print a Markdown table (for docs).")] = False,
) -> None:
    """Print the layer table of the calorimeter geometry."""
    from recoserve.sim.geometry import GEOMETRY, layer_rows

    rows = layer_rows(GEOMETRY)
    header = list(rows[0])
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(str(v) for v in row.values()) + " |")
        return
    table = Table(title="HGCal-like calorimeter: layers (each endcap)")
    for h in header:
        table.add_column(h, justify="right")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    Console().print(table)


train_app = typer.Typer(help="Train the networks on simulated events (CPU).", no_args_is_help=True)
app.add_typer(train_app, name="train")


@train_app.command("clustering")
def train_clustering_command(
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Checkpoint to write.")
    ] = CHECKPOINTS / "clustering" / "training" / "gravnet_oc.pt",
    data_dir: Annotated[Path, typer.Option(help="Where simulated training data is cached.")] = Path(
        "data/clustering"
    ),
    classes: Annotated[
        str, typer.Option(help="Comma-separated event classes to train on.")
    ] = "gun,dense,jets,jets_pu140",
    minutes: Annotated[float, typer.Option(help="Wall-clock budget of this run.")] = 45.0,
    max_steps: Annotated[
        int, typer.Option(help="Length of the learning-rate schedule, over all runs.")
    ] = 60_000,
    train_events: Annotated[int, typer.Option(help="Training events per class.")] = 300,
    validation_events: Annotated[int, typer.Option(help="Validation events per class.")] = 12,
    seed: Annotated[int, typer.Option(help="Seed of the weights and the event order.")] = 1,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate (cosine decay).")] = 2e-3,
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda.")] = "cpu",
    workers: Annotated[int, typer.Option(min=1, help="Processes simulating the data.")] = 2,
    validate_every: Annotated[
        int, typer.Option(min=1, help="Steps between learning-curve points.")
    ] = 500,
    init_from: Annotated[
        Path | None, typer.Option(help="Start from these weights (a fresh optimiser).")
    ] = None,
    batch: Annotated[
        int, typer.Option(min=1, help="Endcaps per step (8 or more pays off on a GPU).")
    ] = 1,
    crop_hits: Annotated[
        int,
        typer.Option(
            min=0,
            help="Crop training endcaps with more hits than this in eta-phi around a random "
            "object (pileup and dense-gun endcaps otherwise take most of the CPU); 0: whole "
            "endcaps. Validation always uses whole endcaps.",
        ),
    ] = 0,
    tune: Annotated[
        bool,
        typer.Option(
            help="Tune thresholds at the end and log efficiency and fake rate on the learning "
            "curve (CPU work; --no-tune on a GPU machine, then tune where it resumes)."
        ),
    ] = True,
    loss: Annotated[
        str,
        typer.Option(
            help="Object-condensation loss of a new run: per-hit, per-hit-beta-energy, "
            'per-object or own-object (docs/clustering.md, "Loss"); a resumed run keeps its own.'
        ),
    ] = "per-hit",
) -> None:
    """Train GravNet + object condensation; resumes <output>.state.pt if it exists, and writes
    the best checkpoint with <checkpoint>.metrics.json (the learning curve)."""
    from recoserve.nn.losses import LOSSES
    from recoserve.train.clustering import ClusteringTrainConfig, train_clustering

    if loss not in LOSSES:
        raise _fail(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")

    config = ClusteringTrainConfig(
        seed=seed,
        classes=tuple(c.strip() for c in classes.split(",") if c.strip()),
        train_events=train_events,
        validation_events=validation_events,
        minutes=minutes,
        max_steps=max_steps,
        learning_rate=learning_rate,
        device=device,
        workers=workers,
        validate_every=validate_every,
        init_from=str(init_from) if init_from else None,
        batch=batch,
        tune=tune,
        crop_hits=crop_hits,
        weights=LOSSES[loss],
    )
    try:
        metrics = train_clustering(config, data_dir, output, log=console.print)
    except ValueError as err:
        raise _fail(str(err)) from None
    console.print(f"wrote {output} at step {metrics['steps']}")


@train_app.command("mlpf")
def train_mlpf_command(
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Checkpoint to write.")
    ] = MLPF_CHECKPOINT,
    data_dir: Annotated[Path, typer.Option(help="Where the prepared elements are cached.")] = Path(
        "data/mlpf"
    ),
    minutes: Annotated[float, typer.Option(help="Wall-clock budget of this run.")] = 30.0,
    max_steps: Annotated[
        int, typer.Option(help="Length of the learning-rate schedule, over all runs.")
    ] = 30_000,
    train_events: Annotated[int, typer.Option(help="Simulated training events.")] = 8000,
    validation_events: Annotated[int, typer.Option(help="Validation events.")] = 300,
    batch_events: Annotated[int, typer.Option(help="Events per training step.")] = 16,
    workers: Annotated[int, typer.Option(help="Processes preparing the events.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the weights and the event order.")] = 1,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate (cosine decay).")] = 2e-3,
    samples: Annotated[
        str,
        typer.Option(
            help="Comma-separated event samples, --train-events each or NAME:EVENTS "
            "(validation events in proportion): jets_with_leptons, "
            "jets_pu140, gun (or any benchmark class)."
        ),
    ] = "jets_with_leptons",
    cluster_sources: Annotated[
        str,
        typer.Option(
            help="Comma-separated clusterings each event is shown with: network, clue, "
            "truth_assignment (one training example per source)."
        ),
    ] = "network",
    per_event_loss: Annotated[
        bool,
        typer.Option(
            "--per-event-loss/--per-element-loss",
            help="Weigh every event the same in the loss, not every element (a pileup event "
            "has a hundred times a jet event's elements). A resumed run keeps its own.",
        ),
    ] = False,
    init_from: Annotated[
        Path | None,
        typer.Option(
            help="Start a new run from these weights (their architecture, a fresh "
            "optimiser); ignored when <output>.state.pt is resumed."
        ),
    ] = None,
) -> None:
    """Train MLPF on elements of simulated events clustered by the committed network (and, with
    --cluster-sources, by CLUE and the truth assignment too); resumes <output>.state.pt if it
    exists, and writes the best checkpoint with <checkpoint>.metrics.json (the learning curve)."""
    from recoserve.train.mlpf import MLPFLossWeights, MLPFTrainConfig, train_mlpf

    def names(text: str) -> tuple[str, ...]:
        return tuple(n.strip() for n in text.split(",") if n.strip())

    config = MLPFTrainConfig(
        seed=seed,
        train_events=train_events,
        validation_events=validation_events,
        batch_events=batch_events,
        minutes=minutes,
        max_steps=max_steps,
        learning_rate=learning_rate,
        workers=workers,
        samples=names(samples),
        cluster_sources=names(cluster_sources),
        weights=MLPFLossWeights(per_event=per_event_loss),
        init_from=str(init_from) if init_from else None,
    )
    try:
        metrics = train_mlpf(config, data_dir, output, log=console.print)
    except ValueError as err:
        raise _fail(str(err)) from None
    console.print(f"wrote {output} after {metrics['steps']} steps")


export_app = typer.Typer(help="Export trained networks (TorchScript, ONNX).", no_args_is_help=True)
app.add_typer(export_app, name="export")
evaluate_app = typer.Typer(
    help="Measure physics performance on held-out events.", no_args_is_help=True
)
app.add_typer(evaluate_app, name="evaluate")


def _report_export(report: dict[str, Any], output_dir: Path, unit: str) -> None:
    """Write parity.json and print the parity of each checked event."""
    (output_dir / "parity.json").write_text(json.dumps(report, indent=2) + "\n")
    for check in report["parity"]:
        console.print(
            f"{check['rows']:>6} {unit}: "
            f"|torchscript - eager| {check['torchscript_max_abs_diff']:.1e}, "
            f"|onnx - eager| {check['onnx_max_abs_diff']:.1e} "
            f"(scaled: {check['onnx_max_scaled_diff']:.1e}); against float64, scaled: eager "
            f"{check['eager_max_scaled_error']:.1e}, onnx adds {check['onnx_excess_error']:.1e}"
        )
    console.print(f"wrote {report['torchscript']} and {report['onnx']}")


@export_app.command("clustering")
def export_clustering_command(
    output_dir: Annotated[Path, typer.Option("-o", "--output-dir", help="Where to write.")] = Path(
        "exports/clustering"
    ),
    checkpoint: Annotated[Path, typer.Option(help="Trained checkpoint.")] = CLUSTERING_CHECKPOINT,
) -> None:
    """TorchScript + ONNX (dynamic number of hits), checked against eager on fresh events."""
    from recoserve.export.clustering import export_clustering

    try:
        report = export_clustering(checkpoint, output_dir)
    except (FileNotFoundError, RuntimeError) as err:
        raise _fail(str(err)) from None
    _report_export(report, output_dir, "hits")


@export_app.command("mlpf")
def export_mlpf_command(
    output_dir: Annotated[Path, typer.Option("-o", "--output-dir", help="Where to write.")] = Path(
        "exports/mlpf"
    ),
    checkpoint: Annotated[Path, typer.Option(help="Trained checkpoint.")] = MLPF_CHECKPOINT,
) -> None:
    """TorchScript + ONNX (dynamic number of elements), checked against eager on fresh events."""
    from recoserve.export.mlpf import export_mlpf

    try:
        report = export_mlpf(checkpoint, output_dir)
    except (FileNotFoundError, RuntimeError) as err:
        raise _fail(str(err)) from None
    _report_export(report, output_dir, "elements")


@export_app.command("repository")
def export_repository_command(
    output: Annotated[Path, typer.Option("-o", "--output", help="Repository to write.")] = Path(
        "model_repository"
    ),
    flavour: Annotated[
        str, typer.Option(help="local: bundled CPU Triton, Python backend; ngc: NGC GPU image.")
    ] = "local",
    max_batch_size: Annotated[
        int | None, typer.Option(help="Events per batch of a public model [4 local, 16 ngc].")
    ] = None,
    instances: Annotated[int, typer.Option(help="Instances of each public model.")] = 2,
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads per instance.")] = 1,
    version: Annotated[int, typer.Option(help="Model version directory to write.")] = 1,
    clustering_checkpoint: _ClusteringCheckpoint = CLUSTERING_CHECKPOINT,
    mlpf_checkpoint: _MlpfCheckpoint = MLPF_CHECKPOINT,
) -> None:
    """Export both networks (parity-checked) and write the Triton model repository."""
    from recoserve.export.repository import ServingOptions, build_repository

    if flavour not in ("local", "ngc"):
        raise _fail(f"--flavour must be local or ngc, not {flavour!r}")
    options = ServingOptions(
        max_batch_size=max_batch_size, instances=instances, threads=threads, version=version
    )
    try:
        manifest = build_repository(
            output,
            flavour,  # type: ignore[arg-type]
            options,
            clustering_checkpoint=clustering_checkpoint,
            mlpf_checkpoint=mlpf_checkpoint,
        )
    except (FileNotFoundError, RuntimeError) as err:
        raise _fail(str(err)) from None
    console.print(
        f"wrote the {flavour} repository to {output} ({manifest['network_mode']} networks)"
    )


_CLASS_OPTION = typer.Option("--class", help="Event class: gun, dense, jets, jets_pu140.")
TUNINGS = CHECKPOINTS
_INPUT_OPTION = typer.Option(
    "--input", help="Evaluate on an events file instead, with the tunings of --class."
)
_TUNINGS_OPTION = typer.Option(
    help="Where validation tunings are read, or written when missing or stale."
)


@evaluate_app.command("clustering")
def evaluate_clustering_command(
    event_class: Annotated[
        str,
        typer.Option("--class", help="Event class: gun, dense, jets, jets_pu140."),
    ] = "gun",
    input_file: Annotated[
        Path | None,
        typer.Option("--input", help="Evaluate on an events file (e.g. `simulate --from`)."),
    ] = None,
    tuned_on: Annotated[
        str, typer.Option(help="With --input: the class whose validation tunings to use.")
    ] = "jets",
    events: Annotated[int, typer.Option("--events", "-n", min=1, help="Test events.")] = 200,
    validation_events: Annotated[
        int, typer.Option(min=1, help="Validation events for tuning CLUE and the thresholds.")
    ] = 200,
    output_dir: _BenchmarkDir = BENCHMARK_DIR,
    checkpoint: Annotated[Path, typer.Option(help="Trained checkpoint.")] = CLUSTERING_CHECKPOINT,
    tunings: Annotated[Path, _TUNINGS_OPTION] = TUNINGS,
) -> None:
    """GravNet + object condensation vs tuned CLUE on one event class's test events (or an
    events file): one block of clustering_benchmark.json, and a figure."""
    from recoserve.metrics.clustering_report import BENCHMARK_JSON, run_class
    from recoserve.metrics.tuning_store import TuningStore

    try:
        block = run_class(
            None if input_file else event_class,
            input_file,
            events,
            validation_events,
            checkpoint,
            output_dir,
            tuned_on=tuned_on,
            store=TuningStore(tunings),
            log=console.print,
        )
    except (FileNotFoundError, ValueError) as err:
        raise _fail(str(err)) from None
    table = Table(title=f"clustering, {block['label']}: {block['events']} test events")
    for column in (
        "",
        "GravNet + OC",
        "CLUE (tuned)",
        "GravNet, legacy truth",
        "CLUE, legacy truth",
    ):
        table.add_column(column, justify="right")
    keys = (
        "efficiency_above_20GeV", "efficiency_5_20GeV", "fake_rate_above_10GeV",
        "fake_rate_above_1GeV", "pileup_cluster_fraction_above_10GeV", "response_median",
        "resolution",
    )  # fmt: skip
    for key in keys:
        table.add_row(
            key,
            *(
                f"{block[a][key]:.3f}"
                for a in ("network", "clue", "network_legacy_truth", "clue_legacy_truth")
            ),
        )
    Console(width=160).print(table)
    console.print(f"written to {output_dir / BENCHMARK_JSON}")


def _evaluate_chains(
    event_class: str,
    chains: str,
    events: int,
    validation_events: int,
    output_dir: Path,
    level: str,
    tunings: Path,
    input_file: Path | None,
) -> None:
    from recoserve.metrics.chain_report import run_chains
    from recoserve.metrics.tuning_store import TuningStore

    names = [c.strip() for c in chains.split(",") if c.strip()]
    stem = f"file_{input_file.stem}" if input_file else event_class
    output = output_dir / f"{level}_{stem}.json"
    try:
        report = run_chains(
            event_class, names, events, validation_events, output, TuningStore(tunings),
            log=console.print, input_file=input_file,
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as err:
        raise _fail(str(err)) from None
    table = Table(title=f"{level}, {report['description']}: {events} test events")
    columns = {
        "ch.had eff": ("charged_hadron", "efficiency"),
        "nu.had eff": ("neutral_hadron", "efficiency"),
        "nu.had fake": ("neutral_hadron", "fake_rate"),
        "nu.had σE/E": ("neutral_hadron", "energy_resolution"),
        "γ eff": ("photon", "efficiency"),
        "μ eff": ("muon", "efficiency"),
    }
    for column in ("chain", *columns, "jet σpt/pt", "MET σ GeV", "s/event"):
        table.add_column(column, justify="left" if column == "chain" else "right")
    for chain in names:
        result = report["chains"][chain]
        table.add_row(
            chain,
            *(f"{result['classes'][c][k]:.3f}" for c, k in columns.values()),
            f"{result['jets']['pt_resolution']:.3f}",
            f"{result['met']['resolution_xy']:.2f}",
            f"{report['seconds_per_event'][chain]:.3f}",
        )
    Console(width=160).print(table)
    console.print(f"written to {output}")


# Options shared by the `evaluate` commands.
_TestEvents = Annotated[int, typer.Option("--events", "-n", min=1, help="Test events.")]
_CalibrationEvents = Annotated[
    int, typer.Option(min=1, help="Validation events for the PF calibrations.")
]


@evaluate_app.command("pf")
def evaluate_pf_command(
    event_class: Annotated[str, _CLASS_OPTION] = "jets",
    chains: Annotated[str, typer.Option(help="Comma-separated clustering+pf chains.")] = ",".join(
        PF_LEVEL_CHAINS
    ),
    events: _TestEvents = 200,
    validation_events: _CalibrationEvents = 100,
    output_dir: _BenchmarkDir = BENCHMARK_DIR,
    tunings: Annotated[Path, _TUNINGS_OPTION] = TUNINGS,
    input_file: Annotated[Path | None, _INPUT_OPTION] = None,
) -> None:
    """MLPF vs the rule-based PF on the network's clusters, and both on the truth ablations
    (truth hit assignment; perfect clusters), on one class's test events."""
    _evaluate_chains(
        event_class, chains, events, validation_events, output_dir, "pf", tunings, input_file
    )


@evaluate_app.command("chain")
def evaluate_chain_command(
    event_class: Annotated[str, _CLASS_OPTION] = "jets",
    chains: Annotated[str, typer.Option(help="Comma-separated clustering+pf chains.")] = ",".join(
        ALL_CHAINS
    ),
    events: _TestEvents = 200,
    validation_events: _CalibrationEvents = 100,
    output_dir: _BenchmarkDir = BENCHMARK_DIR,
    tunings: Annotated[Path, _TUNINGS_OPTION] = TUNINGS,
    input_file: Annotated[Path | None, _INPUT_OPTION] = None,
) -> None:
    """The four chains (network or CLUE clusters x MLPF or rule-based PF) and the two truth
    ablations on one class's test events: per particle class, jets, missing pt, time."""
    _evaluate_chains(
        event_class, chains, events, validation_events, output_dir, "chain", tunings, input_file
    )


@app.command()
def reconstruct(
    source: Annotated[Path, typer.Argument(help="Event file (.parquet or .root).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Parquet file to write.")],
    server: Annotated[
        list[str] | None,
        typer.Option(
            "--server",
            "-s",
            help="Triton gRPC address host:port (repeat for failover; default 127.0.0.1:8001).",
        ),
    ] = None,
    clusters: Annotated[
        bool, typer.Option(help="Also write clusters and hit assignments.")
    ] = False,
    in_flight: Annotated[int, typer.Option(min=1, help="Requests in flight on the stream.")] = 8,
    chunk: Annotated[int, typer.Option(min=1, help="Events per resumable chunk.")] = 64,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for one answer.")] = 60.0,
    compression: Annotated[
        str | None, typer.Option(help="gRPC compression: gzip or deflate.")
    ] = None,
    stop_after: Annotated[
        int | None, typer.Option(help="Stop after this many new events (resume later).")
    ] = None,
    tree: TreeOption = "events",
    mapping: MapOption = None,
    overwrite: Annotated[
        bool,
        typer.Option(help="Redo a finished OUTPUT, or discard the parts of an earlier run."),
    ] = False,
    model_version: Annotated[
        str, typer.Option(help="Pin the served model version (default: the latest).")
    ] = "",
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="RECOSERVE_API_KEY",
            help="Credential for a server that checks one (sent as x-api-key); better given "
            "in the RECOSERVE_API_KEY environment variable than on the command line.",
            show_default=False,
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="RECOSERVE_TOKEN",
            help="Bearer token (HS256 JWT) for a server that accepts them (serve --jwt-secret); "
            "better given in the RECOSERVE_TOKEN environment variable.",
            show_default=False,
        ),
    ] = None,
    ssl: Annotated[bool, typer.Option(help="TLS to the servers.")] = False,
    root_certificates: Annotated[
        Path | None, typer.Option(help="CA certificates (PEM) that sign the servers' TLS.")
    ] = None,
    private_key: Annotated[
        Path | None, typer.Option(help="This client's TLS key (PEM), for mutual TLS.")
    ] = None,
    certificate_chain: Annotated[
        Path | None, typer.Option(help="This client's TLS certificate chain (PEM).")
    ] = None,
) -> None:
    """Send every event of a file to recoserve and write its particle candidates to Parquet.

    Resumes an interrupted run (finished chunks in OUTPUT.parts are kept) and refuses to resume
    from another input file, other options or another served model; leaves a finished OUTPUT
    alone unless --overwrite; exits with code 1 and a summary if events failed.
    """
    from recoserve.client import RecoClient, RecoError
    from recoserve.client.jobs import run_reconstruction
    from recoserve.events.root import parse_mapping

    servers = server or ["127.0.0.1:8001"]
    try:
        client = RecoClient(
            servers,
            timeout=timeout,
            compression=compression,
            model_version=model_version,
            api_key=api_key,
            token=token,
            ssl=ssl,
            root_certificates=root_certificates,
            private_key=private_key,
            certificate_chain=certificate_chain,
        )
    except ValueError as err:
        raise _fail(str(err)) from None
    with (
        client,
        Progress(
            TextColumn("[bold]reconstruct"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=console,
        ) as bar,
    ):
        task = bar.add_task("events", total=None, rate="")
        started = time.perf_counter()
        count = [0]

        def advance(n: int) -> None:
            count[0] += n
            rate = count[0] / max(time.perf_counter() - started, 1e-9)
            bar.update(task, advance=n, rate=f"{rate:.1f} events/s")

        try:
            summary = run_reconstruction(
                source,
                output,
                client,
                clusters=clusters,
                chunk=chunk,
                in_flight=in_flight,
                tree=tree,
                mapping=parse_mapping(mapping or []),
                progress=advance,
                stop_after=stop_after,
                overwrite=overwrite,
            )
        except (OSError, ValueError, KeyError, RecoError) as err:
            raise _fail(str(err)) from None
    if summary.already_complete:
        console.print(
            f"{output} is already complete ({summary.events} events); --overwrite redoes it"
        )
        return
    rate = summary.reconstructed / max(summary.seconds, 1e-9)
    console.print(
        f"{summary.events} events: {summary.done_before} done before, "
        f"{summary.reconstructed} reconstructed now ({rate:.1f} events/s), "
        f"{len(summary.failed)} failed"
    )
    if summary.failed:
        for index, message in sorted(summary.failed.items())[:10]:
            console.print(f"  event {index}: {message}")
        console.print("run the same command again to retry the failed events")
        raise typer.Exit(code=1)
    if output.exists() and not output.with_name(output.name + ".parts").exists():
        console.print(f"wrote {output}")
    else:
        console.print(f"partial results in {output}.parts; run again to finish")


def _gateway_settings(
    triton: list[str],
    api_key: list[str] | None,
    jwt_secret: str | None,
    cors: list[str] | None,
    rate_limit: int,
    triton_key: str | None = None,
) -> Any:
    from recoserve.server.gateway import GatewaySettings

    return GatewaySettings(
        triton=triton,
        api_keys=frozenset(api_key or []),
        jwt_secret=jwt_secret,
        cors_origins=tuple(cors or []),
        rate_limit_per_minute=rate_limit,
        triton_api_key=triton_key,
    )


ApiKeyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--api-key",
        envvar="RECOSERVE_API_KEY",
        help="Accepted API key (repeatable; or RECOSERVE_API_KEY, which keeps it out of the "
        "process list); none: open on 127.0.0.1 only.",
        show_default=False,
    ),
]
JwtOption = Annotated[
    str | None,
    typer.Option(
        help="Accept HS256 bearer tokens (with an expiry) signed with this secret: the gateway "
        "does, and the entry in front of Triton when --host serves other machines."
    ),
]
CorsOption = Annotated[list[str] | None, typer.Option("--cors", help="Allowed CORS origin.")]
RateOption = Annotated[
    int,
    typer.Option(
        min=1, help="Requests per minute per key or client (the gateway's, and the entry's)."
    ),
]


@app.command()
def serve(
    repository: Annotated[
        Path, typer.Option(help="Model repository (exported if missing).")
    ] = Path("model_repository"),
    http_port: Annotated[int, typer.Option(help="Triton HTTP port.")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="Triton gRPC port.")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Triton Prometheus metrics port.")] = 8002,
    gateway_port: Annotated[
        int, typer.Option(help="REST gateway and event display port; 0: no gateway.")
    ] = 8080,
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0 serves other machines).")
    ] = "127.0.0.1",
    api_key: ApiKeyOption = None,
    jwt_secret: JwtOption = None,
    cors: CorsOption = None,
    rate_limit: RateOption = 600,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the models.")] = 300.0,
    clustering_checkpoint: _ClusteringCheckpoint = CLUSTERING_CHECKPOINT,
    mlpf_checkpoint: _MlpfCheckpoint = MLPF_CHECKPOINT,
    building_blocks: Annotated[
        bool,
        typer.Option(
            help="Also load gravnet_oc, condensation, mlpf and mlpf_decode (the public models "
            "run the networks inline and never call them)."
        ),
    ] = False,
    metrics_host: Annotated[
        str | None,
        typer.Option(
            help="Where Triton's Prometheus metrics listen (default: --host, or 127.0.0.1 "
            "when --host serves other machines; a container gives 0.0.0.0 for Prometheus).",
            show_default=False,
        ),
    ] = None,
    max_in_flight: Annotated[
        int,
        typer.Option(
            min=1,
            help="With --host serving other machines: requests the entry lets through to "
            "Triton at once; beyond it they are refused at once (UNAVAILABLE, retry-after).",
        ),
    ] = 16,
) -> None:
    """Start the embedded Triton (CPU, local flavour) with both public models, and the REST
    gateway beside it; a crashed Triton is restarted (up to 5 times in a row, with backoff);
    Ctrl-C, SIGTERM or SIGHUP stops both (exit status 128 + signal)."""
    import tempfile

    from recoserve.client.sync import is_loopback
    from recoserve.export.repository import build_repository, repository_is_current
    from recoserve.server.envoy import EntryPolicy, authenticated_entry
    from recoserve.server.triton import (
        Ports,
        TritonError,
        TritonServer,
        Watchdog,
        free_ports,
        port_is_free,
        public_models_only,
    )

    # Nothing reachable from another machine without a credential. Triton always listens on
    # loopback; other machines reach it through the authenticated entry (Envoy on --host, at
    # the ports given), which checks the API keys and bearer tokens.
    exposed = not is_loopback(host)
    if exposed and not api_key and not jwt_secret:
        raise _fail(
            f"serving {host} needs a credential: --api-key and/or --jwt-secret (checked by the "
            "entry in front of Triton and by the gateway)"
        )
    for name, port in (("gateway", gateway_port), ("grpc", grpc_port), ("http", http_port)):
        where = host if name == "gateway" or exposed else "127.0.0.1"
        if port and not port_is_free(port, where):
            raise _fail(f"the {name} port {port} is taken; choose another with --{name}-port")
    if not repository_is_current(repository, "local", clustering_checkpoint, mlpf_checkpoint):
        console.print(f"exporting the model repository to {repository} ...")
        try:
            build_repository(
                repository,
                "local",
                clustering_checkpoint=clustering_checkpoint,
                mlpf_checkpoint=mlpf_checkpoint,
            )
        except (FileNotFoundError, RuntimeError) as err:
            raise _fail(str(err)) from None
    # Behind the entry Triton takes free loopback ports; the ports asked for are the entry's.
    internal = free_ports(2) if exposed else [http_port, grpc_port]
    triton_ports = Ports(internal[0], internal[1], metrics_port)
    server = TritonServer(
        repository,
        triton_ports,
        extra_args=() if building_blocks else public_models_only(),
        metrics_host=metrics_host,
    )
    watchdog = Watchdog(
        server,
        log=lambda line: console.print(f"[bold yellow]watchdog:[/] {line}"),
        on_give_up=lambda: os.kill(os.getpid(), signal.SIGTERM),
    )
    try:
        with _stopped_by_signals(), contextlib.ExitStack() as stack:
            try:
                server.launch()
                console.print(f"starting Triton (log: {server.log_path}) ...")
                server.wait_ready(timeout)
                if exposed:
                    # The entry's configuration holds the keys: gone when serve stops.
                    workdir = Path(
                        stack.enter_context(tempfile.TemporaryDirectory(prefix="recoserve-entry-"))
                    )
                    policy = EntryPolicy(
                        api_keys={k: f"key-{i + 1}" for i, k in enumerate(api_key or [])},
                        jwt_secret=jwt_secret,
                        requests_per_minute=rate_limit,
                        burst=max(10, rate_limit // 4),
                        max_in_flight=max_in_flight,
                    )
                    stack.enter_context(
                        authenticated_entry([server], policy, workdir, host, grpc_port, http_port)
                    )
            except (TritonError, RuntimeError, FileNotFoundError) as err:
                raise _fail(str(err)) from None
            table = Table(title="recoserve is serving (Ctrl-C to stop)")
            table.add_column("endpoint")
            table.add_column("address")
            checked = " (credentials checked by the entry)" if exposed else ""
            listen = host if exposed else "127.0.0.1"
            table.add_row("Triton gRPC", f"{listen}:{grpc_port}{checked}")
            table.add_row("Triton HTTP", f"http://{listen}:{http_port}{checked}")
            table.add_row(
                "Prometheus metrics", f"http://{server.metrics_address}:{metrics_port}/metrics"
            )
            table.add_row("public models", "hgcal_clustering, event_reco")
            if gateway_port:
                table.add_row("REST gateway (OpenAPI)", f"http://{host}:{gateway_port}/docs")
                table.add_row("event display", f"http://{host}:{gateway_port}/")
            Console().print(table)
            watchdog.start()  # a crashed Triton is restarted (bounded, with backoff)
            _serve_until_stopped(
                gateway_port, triton_ports.grpc, host, api_key, jwt_secret, cors, rate_limit
            )
    finally:
        console.print("stopping ...")
        watchdog.shutdown()
        if watchdog.gave_up:
            raise typer.Exit(code=1)


def _serve_until_stopped(
    gateway_port: int,
    grpc_port: int,
    host: str,
    api_key: list[str] | None,
    jwt_secret: str | None,
    cors: list[str] | None,
    rate_limit: int,
) -> None:
    """Run the gateway in front of Triton (or just wait) until a stop signal; the watchdog
    restarts a crashed Triton meanwhile, and signals this process if it gives up."""
    if gateway_port:
        from recoserve.server.gateway import serve_gateway

        settings = _gateway_settings(
            [f"127.0.0.1:{grpc_port}"], api_key, jwt_secret, cors, rate_limit
        )
        # uvicorn handles SIGINT and SIGTERM itself (a graceful shutdown), then raises the
        # signal again, which our handlers turn into the exit above.
        serve_gateway(settings, host, gateway_port)
    else:
        while True:
            time.sleep(3600)


@app.command("scale-out")
def scale_out_command(
    replicas: Annotated[int, typer.Option(min=1, help="Triton replicas to start.")] = 2,
    port: Annotated[int, typer.Option(help="Envoy's gRPC port (point clients here).")] = 9001,
    repository: Annotated[
        Path, typer.Option(help="Model repository (exported if missing).")
    ] = Path("model_repository"),
) -> None:
    """Local scale-out: several embedded Tritons behind Envoy (LEAST_REQUEST, gRPC health
    checks) on 127.0.0.1; Ctrl-C stops everything."""
    import tempfile

    from recoserve.export.repository import build_repository, repository_is_current
    from recoserve.server.envoy import scale_out
    from recoserve.server.triton import TritonError

    if not repository_is_current(repository):
        build_repository(repository, "local")
    workdir = Path(tempfile.mkdtemp(prefix="recoserve-scale-out-"))
    try:
        with (
            _stopped_by_signals(),
            scale_out(repository, replicas, workdir, port) as (
                envoy,
                servers,
            ),
        ):
            table = Table(title=f"{replicas} Triton replicas behind Envoy (Ctrl-C to stop)")
            table.add_column("")
            table.add_column("gRPC")
            table.add_row("Envoy (clients)", envoy.url)
            for i, server in enumerate(servers):
                table.add_row(f"replica {i}", server.grpc_url)
            Console().print(table)
            console.print(f"logs in {workdir}")
            while all(s.process is not None and s.process.poll() is None for s in servers):
                time.sleep(0.5)
    except (TritonError, RuntimeError, FileNotFoundError) as err:
        raise _fail(str(err)) from None


@app.command()
def bench(
    output_dir: Annotated[Path, typer.Option("-o", "--output-dir")] = Path("benchmarks/results"),
    quick: Annotated[
        bool, typer.Option(help="Two sizes, three concurrencies, short runs.")
    ] = False,
    budget: Annotated[float, typer.Option(help="Target seconds per measurement.")] = 6.0,
    serving: Annotated[
        bool,
        typer.Option(help="Measure the serving modes; --no-serving: only the chains' cost."),
    ] = True,
) -> None:
    """The cost of an event and of serving it, in one run: ML chain vs classical chain per event
    at 3k-200k hits on one core (with peak memory in-process and served), then the full chain
    through every serving path side by side (in-process limit, Triton gRPC / shared memory /
    streaming, REST binary / JSON, naive FastAPI + torch): CSV, JSON and plots."""
    from recoserve.benchmark.chain_cost import CHAIN_SIZES
    from recoserve.benchmark.runner import MODES, SIZES, run_bench

    sizes = ("1k", "10k") if quick else tuple(SIZES)
    concurrencies = (1, 2, 8) if quick else (1, 2, 4, 8)
    results = run_bench(
        output_dir,
        sizes,
        concurrencies,
        modes=MODES if serving else (),
        budget_s=2.0 if quick else budget,
        log=console.print,
        chain_sizes=("7k", "20k") if quick else tuple(CHAIN_SIZES),
    )
    console.print(f"{len(results)} serving measurements; all results in {output_dir}")


@app.command()
def gateway(
    triton: Annotated[
        list[str] | None,
        typer.Option("--triton", help="Triton gRPC address (repeatable; default 127.0.0.1:8001)."),
    ] = None,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    api_key: ApiKeyOption = None,
    jwt_secret: JwtOption = None,
    cors: CorsOption = None,
    rate_limit: RateOption = 600,
    triton_api_key: Annotated[
        str | None,
        typer.Option(
            envvar="RECOSERVE_TRITON_API_KEY",
            help="The key Triton checks, when it serves other machines (recoserve serve "
            "--api-key); or RECOSERVE_TRITON_API_KEY.",
            show_default=False,
        ),
    ] = None,
    header_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds for a request's line and headers to arrive.")
    ] = 10.0,
    body_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds for a request's body, after its headers.")
    ] = 60.0,
    max_connections_per_address: Annotated[
        int, typer.Option(min=1, help="Open connections one client address may hold.")
    ] = 64,
) -> None:
    """Run only the REST gateway and event display, in front of running Triton servers."""
    from dataclasses import replace

    from recoserve.server.gateway import serve_gateway

    settings = replace(
        _gateway_settings(
            triton or ["127.0.0.1:8001"], api_key, jwt_secret, cors, rate_limit, triton_api_key
        ),
        header_timeout_s=header_timeout,
        body_timeout_s=body_timeout,
        max_connections_per_address=max_connections_per_address,
    )
    console.print(
        f"recoserve gateway on http://{host}:{port} (OpenAPI: /docs) in front of Triton "
        f"{', '.join(settings.triton)}; Ctrl-C to stop"
    )
    with _stopped_by_signals():
        serve_gateway(settings, host, port)


@app.command()
def schema() -> None:
    """Print the event-file columns (name, dtype, unit) as Markdown."""
    from recoserve.events.model import schema_markdown

    print(schema_markdown(), end="")


# The extra each command needs beyond the light client (`reconstruct`, `info`, `schema`,
# `geometry` need none; ROOT input needs "root", which says so itself).
COMMAND_EXTRAS = {
    "simulate": "sim",
    "display": "sim",
    "resolution": "sim",
    "profiles": "sim",
    "multiplicity": "sim",
    "classes": "sim",
    "train": "train",
    "export": "serve",
    "serve": "serve",
    "scale-out": "serve",
    "evaluate": "bench",
    "bench": "bench",
    "gateway": "gateway",
}


def _missing_extra_message(err: ImportError, argv: list[str]) -> str | None:
    """One line naming the extra to install, or None for an ImportError that is not ours."""
    command = next((a for a in argv if a in COMMAND_EXTRAS), None)
    if isinstance(err, MissingExtra):
        if command is None or err.extra == "root":  # ROOT input says so itself
            return str(err)
        return str(MissingExtra(f"`recoserve {command}`", COMMAND_EXTRAS[command], err.missing))
    module = getattr(err, "name", None) or ""
    extra = COMMAND_EXTRAS[command] if command else extra_of_module(module)
    if not isinstance(err, ModuleNotFoundError) or extra is None:
        return None
    what = f"`recoserve {command}`" if command else "this command"
    return str(MissingExtra(what, extra, [module]))


def main() -> None:
    """The `recoserve` console script: the CLI, with a missing extra said in one line."""
    import sys

    try:
        app()
    except ImportError as err:
        message = _missing_extra_message(err, sys.argv[1:])
        if message is None:
            raise
        typer.echo(f"error: {message}", err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
