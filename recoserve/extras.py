"""Which optional part of the package ("extra") brings which third-party modules.

``pip install recoserve`` is the light client: numpy, pyarrow, tritonclient's gRPC part, typer
and rich — what a reconstruction job needs to send events and read candidates back. Everything
else is an extra (pyproject.toml declares the same groups). A module that needs an extra calls
``require`` before importing it, so a missing extra is one line that says what to install, not
a traceback from deep inside a dependency.
"""

from __future__ import annotations

import importlib.util

# extra -> the modules it provides that the code imports (pyproject.toml has the packages)
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "root": ("uproot", "awkward"),
    "sim": ("scipy", "pyhepmc", "matplotlib", "mplhep"),
    "gateway": ("fastapi", "uvicorn", "prometheus_client", "jwt", "scipy"),
    "serve": ("torch", "onnx", "onnxruntime", "pytriton", "yaml", "fastapi", "scipy"),
    "train": ("torch", "scipy", "pyhepmc"),
    "bench": ("torch", "onnxruntime", "fastjet", "psutil", "httpx", "uproot", "scipy"),
}


class MissingExtra(ImportError):
    """An optional part of recoserve that is not installed; the message says how to add it."""

    def __init__(self, what: str, extra: str, missing: list[str]) -> None:
        super().__init__(
            f"{what} needs the '{extra}' extra (missing: {', '.join(missing)}): "
            f"{install_hint(extra)}"
        )
        self.extra = extra
        self.missing = missing


def install_hint(extra: str) -> str:
    return f"pip install 'recoserve[{extra}]'"


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (found without importing)."""
    return [m for m in EXTRA_MODULES[extra] if importlib.util.find_spec(m) is None]


def require(extra: str, what: str) -> None:
    """Raise MissingExtra (one line) when ``what`` cannot run without ``extra``."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtra(what, extra, missing)


def extra_of_module(module: str) -> str | None:
    """The first extra that provides a top-level module, for an unexpected ImportError."""
    top = module.split(".")[0]
    return next((extra for extra, mods in EXTRA_MODULES.items() if top in mods), None)
