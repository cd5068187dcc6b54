"""Every `recoserve ...` command shown in README.md and docs/ still parses as documented (its
subcommands, options, choices and values), and the cheap ones run, scaled down: the docs cannot
drift from the CLI unnoticed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import typer.main
from typer.testing import CliRunner

from recoserve.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Scaled down so that the whole suite stays fast: (option, value) forced where present.
SCALE = {"--events": "1", "-n": "1", "--particles": "10", "-p": "10"}
# Run for real (cheap and self-contained); the others are parsed only: they train, serve,
# evaluate for minutes or need a running server or a generator file.
RUN = {"simulate", "info", "display", "classes", "schema", "geometry"}


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every `recoserve` command line in a fenced code block of the docs."""
    found = []
    for path in DOCS:
        for block in re.findall(r"```[a-z]*\n(.*?)```", path.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.strip().removeprefix("$ ")
                if not line.startswith("recoserve ") or line.startswith("recoserve is serving"):
                    continue
                argv = shlex.split(line.split(" #")[0])[1:]
                found.append((f"{path.name}: {line[:60]}", [a for a in argv if a != "..."]))
    return found


COMMANDS = documented_commands()


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) >= 20  # the extraction works; a docs rewrite that drops them fails


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_a_documented_command_parses(where: str, argv: list[str]) -> None:
    command: click.Command = typer.main.get_command(app)
    context = command.make_context("recoserve", list(argv))
    while isinstance(command, click.Group):
        rest = [*context.protected_args, *context.args]
        name, sub, args = command.resolve_command(context, rest)
        assert sub is not None and name is not None, f"{where}: no command {rest[:1]}"
        command = sub
        context = sub.make_context(name, args, parent=context)  # raises on a bad option/value


def _needs_users_file(argv: list[str]) -> bool:
    """A generator file or a ROOT ntuple of the user's: parsed above, not run."""
    return "--from" in argv or any(a.endswith(".root") for a in argv)


RUNNABLE = [(w, a) for w, a in COMMANDS if a and a[0] in RUN and not _needs_users_file(a)]


@pytest.mark.parametrize(("where", "argv"), RUNNABLE, ids=[w for w, _ in RUNNABLE])
def test_a_cheap_documented_command_runs(
    where: str, argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # outputs land here, never in the source tree
    runner = CliRunner()
    # inputs the example assumes: an events file from the simulation section
    for name in ("events.parquet", "jets.parquet"):
        made = runner.invoke(app, ["simulate", "-n", "1", "-p", "10", "-o", name])
        assert made.exit_code == 0, made.output
    args = list(argv)
    for i, arg in enumerate(args[:-1]):
        if arg in SCALE:
            args[i + 1] = SCALE[arg]
    args = [str(tmp_path / Path(a).name) if a.startswith("docs/") else a for a in args]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, f"{where}\n{done.output}"
