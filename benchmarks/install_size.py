"""Installed size of the light client (`pip install recoserve`) vs the full environment.

Run: `python benchmarks/install_size.py` (about a minute: builds the wheel, installs it with its
base dependencies into a fresh virtual environment, and measures both that environment and the
project's full one, .venv by default). Writes benchmarks/results/install_size.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def size_mb(path: Path) -> float:
    return (
        sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20
    )


def packages(env: Path) -> list[str]:
    done = subprocess.run(
        [str(env / "bin" / "python"), "-m", "pip", "list", "--format", "freeze"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return sorted(line.split("==")[0] for line in done.stdout.splitlines() if "==" in line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", type=Path, default=ROOT / ".venv", help="the full environment")
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks/results/install_size.json"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheels, env = Path(tmp) / "wheels", Path(tmp) / "venv"
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
            check=True, capture_output=True,
        )  # fmt: skip
        venv.create(env, with_pip=True)
        (wheel,) = wheels.glob("*.whl")
        subprocess.run(
            [str(env / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
            check=True, capture_output=True,
        )  # fmt: skip
        light = {"megabytes": round(size_mb(env)), "packages": packages(env)}
    full = {"megabytes": round(size_mb(args.full)), "packages": packages(args.full)}
    result = {
        "light_client": {"megabytes": light["megabytes"], "n_packages": len(light["packages"]),
                         "packages": light["packages"]},
        "full": {"megabytes": full["megabytes"], "n_packages": len(full["packages"])},
    }  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"light client: {light['megabytes']} MB, {len(light['packages'])} packages; "
        f"full: {full['megabytes']} MB, {len(full['packages'])} packages"
    )


if __name__ == "__main__":
    main()
