"""servesim's engine: config, requests, replicas, KV memory, cluster, metrics, runner and CLI.

The Python API (`load_config`, `run_experiment`, `run_variants`, `sweep`, `plan`, `write_results`, `RunResult`)
lives in `servesim.sim.api` and is re-exported here, imported on first use so that importing a
submodule (or `simrun --version`) does not load the whole simulator.
"""
from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("servesim")
except PackageNotFoundError:
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from servesim.sim.api import RunResult, load_config, plan, run_experiment, run_variants, sweep, write_results

__all__ = ["RunResult", "__version__", "load_config", "plan", "run_experiment", "run_variants", "sweep",
           "write_results"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module("servesim.sim.api"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
