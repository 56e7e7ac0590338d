"""The Python API: load a config, run it, get DataFrames; what `simrun run` does, without the CLI.

Meant for notebooks and scripts: every call is self-contained (no global state besides the
policy registry), so a cell can be re-run and the same config and seed give the same results.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servesim.sim.errors import ConfigError
from servesim.sim.experiment.config import ExperimentConfig
from servesim.sim.experiment.loading import apply_overrides, read_yaml, validate_config, variant_configs
from servesim.sim.reporting.results import RunResult, write_results
from servesim.sim.runner import prepare, simulate

if TYPE_CHECKING:
    import pandas as pd

    from servesim.sim.placement.run import PlanReport
    from servesim.sim.sweeps.backends import Backend

ConfigSource = ExperimentConfig | Mapping[str, Any] | str | os.PathLike[str]
Overrides = Iterable[str] | Mapping[str, Any]
Progress = Callable[[int, float], None]


def load_config(source: ConfigSource, overrides: Overrides = ()) -> ExperimentConfig:
    """A validated config from a YAML file, a dict (as the YAML would read) or a config.

    `overrides` are `--set` strings (`"scheduler.max_num_seqs=64"`, values parsed as YAML) or a
    mapping of key paths to values (`{"scheduler.max_num_seqs": 64}`). Problems raise a
    `ConfigError` listing each with its key path.
    """
    settings = _override_strings(overrides)
    if isinstance(source, ExperimentConfig) and not settings:
        return source
    if isinstance(source, ExperimentConfig):
        data, origin = source.model_dump(mode="json"), "<config>"
    elif isinstance(source, Mapping):
        data, origin = dict(source), "<config>"
    else:
        data, origin = read_yaml(Path(source)), str(source)
    return validate_config(apply_overrides(data, settings), origin=origin)


def run_experiment(
    config: ConfigSource,
    base_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    *,
    overrides: Overrides = (),
) -> RunResult:
    """Simulate one experiment; the result holds `.summary` (the `summary.json` dict) and
    DataFrames: `.requests`, `.replica_series`, `.system_series`, `.iterations`.

    Relative paths in the config (traces, tables, HuggingFace configs) are relative to
    `base_dir`: by default the config file's folder when `config` is a path, else the current
    directory. A config with `variants` runs with `run_variants`.
    """
    resolved = load_config(config, overrides)
    if resolved.variants:
        names = ", ".join(resolved.variants)
        raise ConfigError(f"this config has variants ({names}): run them with run_variants(), or remove `variants`")
    return simulate(prepare(resolved, _base_dir(config, base_dir)), progress)


def run_variants(
    config: ConfigSource, base_dir: str | os.PathLike[str] | None = None, *, overrides: Overrides = ()
) -> dict[str, RunResult]:
    """Simulate every variant of an experiment (all validated before the first runs), by name."""
    resolved = load_config(config, overrides)
    folder = _base_dir(config, base_dir)
    prepared = {name: prepare(c, folder) for name, c in variant_configs(resolved).items()}
    return {name: simulate(run) for name, run in prepared.items()}


def sweep(
    config: ConfigSource,
    output: str | os.PathLike[str],
    base_dir: str | os.PathLike[str] | None = None,
    *,
    overrides: Overrides = (),
    jobs: int | None = None,
    backend: Backend = "local",
    address: str | None = None,
) -> pd.DataFrame:
    """Run every point of the config's `sweep:` block into `output` (resuming an earlier run of the
    same sweep there) and return its table, as `simrun sweep` does. `jobs` local processes (default:
    one per CPU; `jobs=1` runs in this process, so policies registered in a notebook are found)."""
    from servesim.sim.sweeps.run import run_sweep

    resolved = load_config(config, overrides)
    return run_sweep(resolved, _base_dir(config, base_dir), output, jobs=jobs, backend=backend, address=address).table


def plan(
    config: ConfigSource,
    output: str | os.PathLike[str],
    base_dir: str | os.PathLike[str] | None = None,
    *,
    overrides: Overrides = (),
    jobs: int | None = None,
    backend: Backend = "local",
    address: str | None = None,
) -> PlanReport:
    """Search the config's `plan:` block into `output` (reusing an earlier search's candidates there), as
    `simrun plan` does; the report holds `.table` (one row per candidate), `.probes` and `.best` (a dict,
    None if no candidate met the target). `jobs=1` runs in this process."""
    from servesim.sim.placement.run import run_plan

    resolved = load_config(config, overrides)
    return run_plan(resolved, _base_dir(config, base_dir), output, jobs=jobs, backend=backend, address=address)


def _override_strings(overrides: Overrides) -> list[str]:
    if isinstance(overrides, Mapping):
        # JSON is YAML, so each value reads back exactly as given.
        return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    if isinstance(overrides, str):
        return [overrides]
    return list(overrides)


def _base_dir(config: ConfigSource, base_dir: str | os.PathLike[str] | None) -> Path:
    if base_dir is not None:
        return Path(base_dir)
    if isinstance(config, (str, os.PathLike)):
        return Path(config).resolve().parent
    return Path(".")


__all__ = ["RunResult", "load_config", "plan", "run_experiment", "run_variants", "sweep", "write_results"]
