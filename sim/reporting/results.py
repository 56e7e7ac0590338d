"""Run results in memory, and the files of the results directory they are written to.

Where and how the directory is written safely (checks, lock, staging, swap) is `output_target`
and `output_dir`; this module decides what goes into it.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from shutil import copyfile
from typing import Any

import numpy as np
import pandas as pd
import yaml

from servesim.sim.engine.request import Request
from servesim.sim.experiment.classes import ServiceClass
from servesim.sim.experiment.config import ExperimentConfig
from servesim.sim.reporting.benchmark_serving import write_benchmark_serving
from servesim.sim.reporting.gap_store import GapStore
from servesim.sim.reporting.json_output import json_text
from servesim.sim.reporting.output_dir import ResultsClaim, claim_output
from servesim.sim.reporting.output_target import resolve_target
from servesim.sim.reporting.request_rows import REQUEST_COLUMNS, request_row
from servesim.sim.reporting.spill import read_table, typed_frame
from servesim.sim.reporting.summary import slo_met

_TEXT_COLUMNS = ("state", "reject_reason", "slo_class")
_FLOAT_COLUMNS = ("arrival_s", "picked_up_s", "first_scheduled_s", "first_token_s", "finish_s", "max_tbt_s")
REQUEST_DTYPES = {name: "str" if name in _TEXT_COLUMNS else "float64" if name in _FLOAT_COLUMNS else "int64"
                  for name in REQUEST_COLUMNS}
_typed_requests = typed_frame(REQUEST_COLUMNS, REQUEST_DTYPES)


@dataclass
class RunResult:
    """A run's summary, with its tables on disk (in `files`), read back as DataFrames on access.

    Each access reads the file again: a million-request table is not held for the result's life.
    """

    config: ExperimentConfig
    summary: dict[str, Any]
    files: RunFiles

    @property
    def iterations(self) -> pd.DataFrame | None:
        """One row per iteration (None unless `output.iterations`)."""
        return read_table(self.files.iterations) if self.files.iterations is not None else None

    @property
    def requests(self) -> pd.DataFrame:
        return read_table(self.files.requests)

    @property
    def replica_series(self) -> pd.DataFrame:
        return read_table(self.files.replica_series)

    @property
    def system_series(self) -> pd.DataFrame:
        return read_table(self.files.system_series)

    def table(self, name: str) -> pd.DataFrame:
        """One of the run's further tables (`RunFiles.tables`), e.g. a disaggregated run's `transfers`."""
        return read_table(self.files.tables[name])

    @property
    def gaps(self) -> GapStore:
        """Every gap between successive tokens of a request, pooled (on disk, read in blocks)."""
        return self.files.gaps

    @property
    def token_gaps(self) -> tuple[np.ndarray, np.ndarray]:
        """Every gap between successive tokens of a request, pooled, as (seconds, times observed) arrays."""
        return self.files.gaps.arrays()


@dataclass(frozen=True)
class RunFiles:
    """Where a finished run's tables are, and what keeps them there (the metrics' scratch folder)."""

    requests: Path
    replica_series: Path
    system_series: Path
    gaps: GapStore
    iterations: Path | None = None
    keep_alive: object = None
    tables: Mapping[str, Path] = field(default_factory=dict)
    """Further tables of this run by name, written as `<name>.parquet` (a disaggregated run's transfers)."""


def request_frame(rows: list[tuple], classes: Mapping[str, ServiceClass]) -> pd.DataFrame:
    """Rows of REQUEST_COLUMNS with their derived latencies (see the README); works on any chunk."""
    table = _typed_requests(rows)
    finished = table["state"] == "finished"
    table["queue_s"] = (table["first_scheduled_s"] - table["arrival_s"]).where(finished)
    table["ttft_s"] = (table["first_token_s"] - table["arrival_s"]).where(finished)
    table["e2e_s"] = (table["finish_s"] - table["arrival_s"]).where(finished)
    decode_steps = (table["output_tokens"] - 1).where(table["output_tokens"] > 1)
    table["tpot_s"] = ((table["e2e_s"] - table["ttft_s"]) / decode_steps).where(finished)
    table["normalized_latency_s"] = table["e2e_s"] / table["output_tokens"]
    table["slo_met"] = slo_met(table, classes)
    return table


def request_table(requests: list[Request], classes: Mapping[str, ServiceClass]) -> pd.DataFrame:
    """One row per request with its timestamps and derived latencies (see the README)."""
    return request_frame([request_row(r) for r in requests], classes)


def write_results(result: RunResult, out_dir: str | os.PathLike[str], plots: bool = True,
                  overwrite: bool = True) -> Path:
    """Write the results directory safely (see `output_dir`): checked, locked, staged and swapped in."""
    target = resolve_target(out_dir, overwrite)
    with claim_output(target, overwrite) as claim:
        write_claimed_results(claim, result, plots)
    return Path(out_dir)


def write_claimed_results(claim: ResultsClaim, result: RunResult, plots: bool) -> None:
    """One run's files into a claimed target, which they replace only once all are written."""
    with claim.staging("run", config_yaml(result.config)) as staging:
        write_run_files(result, staging, plots)


def config_yaml(config: ExperimentConfig) -> str:
    """The resolved config as written to `config.yaml` (and fingerprinted in the results marker)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def write_run_files(result: RunResult, directory: Path, plots: bool) -> None:
    """The files of one run (see the README's output reference) into an existing directory."""
    (directory / "config.yaml").write_text(config_yaml(result.config))
    (directory / "summary.json").write_text(json_text(result.summary))
    write_benchmark_serving(result, directory)
    files = result.files
    for name, path in (("requests", files.requests), ("replica_series", files.replica_series),
                       ("system_series", files.system_series), ("iterations", files.iterations)):
        if path is not None:
            copyfile(path, directory / f"{name}.parquet")
    for name, path in files.tables.items():
        copyfile(path, directory / f"{name}.parquet")
    if plots:
        from servesim.sim.reporting.plots import write_plots

        write_plots(result, directory)
