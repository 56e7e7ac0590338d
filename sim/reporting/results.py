"""Run results in memory, and the files of the results directory they are written to.

Where and how the directory is written safely (checks, lock, staging, swap) is `output_target`
and `output_dir`; this module decides what goes into it.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from servesim.sim.engine.request import Request
from servesim.sim.experiment.classes import ServiceClass
from servesim.sim.experiment.config import ExperimentConfig
from servesim.sim.reporting.benchmark_serving import write_benchmark_serving
from servesim.sim.reporting.json_output import json_text
from servesim.sim.reporting.output_dir import ResultsClaim, claim_output
from servesim.sim.reporting.output_target import resolve_target
from servesim.sim.reporting.summary import slo_met


@dataclass
class RunResult:
    config: ExperimentConfig
    summary: dict[str, Any]
    requests: pd.DataFrame
    replica_series: pd.DataFrame
    system_series: pd.DataFrame
    iterations: pd.DataFrame | None
    token_gaps: tuple[np.ndarray, np.ndarray]
    """Every gap between successive tokens of a request, pooled, as (seconds, times observed)."""


def request_table(requests: list[Request], classes: Mapping[str, ServiceClass]) -> pd.DataFrame:
    """One row per request with its timestamps and derived latencies (see the README)."""
    table = pd.DataFrame(
        {
            "request_id": [r.request_id for r in requests],
            "replica": [r.replica_id for r in requests],
            "state": [r.state.value for r in requests],
            "reject_reason": [r.reject_reason for r in requests],
            "arrival_s": [r.arrival_s for r in requests],
            "prompt_tokens": [r.prompt_tokens for r in requests],
            "output_tokens": [r.output_tokens for r in requests],
            "priority": [r.priority for r in requests],
            "slo_class": [r.slo_class for r in requests],
            "first_scheduled_s": [r.first_scheduled_s for r in requests],
            "first_token_s": [r.first_token_s for r in requests],
            "finish_s": [r.finish_s for r in requests],
            "max_tbt_s": [r.max_tbt_s if r.output_tokens > 1 else np.nan for r in requests],
            "num_preemptions": [r.num_preemptions for r in requests],
            "num_swaps": [r.num_swaps for r in requests],
            "cached_tokens": [r.num_cached_tokens for r in requests],
        }
    )
    finished = table["state"] == "finished"
    table["queue_s"] = (table["first_scheduled_s"] - table["arrival_s"]).where(finished)
    table["ttft_s"] = (table["first_token_s"] - table["arrival_s"]).where(finished)
    table["e2e_s"] = (table["finish_s"] - table["arrival_s"]).where(finished)
    decode_steps = (table["output_tokens"] - 1).where(table["output_tokens"] > 1)
    table["tpot_s"] = ((table["e2e_s"] - table["ttft_s"]) / decode_steps).where(finished)
    table["normalized_latency_s"] = table["e2e_s"] / table["output_tokens"]
    table["slo_met"] = slo_met(table, classes)
    return table


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
    result.requests.to_parquet(directory / "requests.parquet", index=False)
    result.replica_series.to_parquet(directory / "replica_series.parquet", index=False)
    result.system_series.to_parquet(directory / "system_series.parquet", index=False)
    if result.iterations is not None:
        result.iterations.to_parquet(directory / "iterations.parquet", index=False)
    if plots:
        from servesim.sim.reporting.plots import write_plots

        write_plots(result, directory)
