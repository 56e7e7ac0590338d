"""`simrun fidelity`: the reference engine and the simulator on the same trace, compared.

Steps: load the experiment config; reuse its cost tables (`cost_model: {kind: table, tables:
DIR}`) or profile the model on this device into `<out>/tables`; serve the config's workload on
the reference engine in real time with the config's scheduler; simulate the same workload with
the table cost model; write `<out>/report.json`, `iterations.parquet` (every measured
iteration with its prediction), `engine_requests.parquet`, `sim_requests.parquet` and
`fidelity.png`.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from servesim.hwmodels import DeviceKind
from servesim.profiler.profile import ProfileRequest, profile, setup_device
from servesim.profiler.report import engine_latencies, iteration_errors, iteration_table, latency_errors, plot
from servesim.profiler.serving import requests_from_workload, run_engine
from servesim.profiler.timing import DTYPES
from servesim.sim.errors import ConfigError
from servesim.sim.experiment.config import EngineConfig, ExperimentConfig
from servesim.sim.experiment.loading import load_config
from servesim.sim.reporting.json_output import json_text
from servesim.sim.reporting.progress import QUIET, ProgressMode, ProgressOptions
from servesim.sim.runner import PreparedRun, prepare, run_extent, simulate

REFERENCE_ENGINE = EngineConfig(version="none", async_scheduling=False, cuda_graphs=False, api_server=False)
"""The reference engine steps synchronously, eagerly, with no API server: the simulation must too."""


@dataclass(frozen=True)
class FidelityRequest:
    config: Path
    out_dir: Path
    overrides: tuple[str, ...] = ()
    quick: bool = False
    progress: ProgressOptions = QUIET
    """The simulation's progress; profiling shows its own bar when this is a terminal bar."""


def run_fidelity(request: FidelityRequest) -> dict[str, Any]:
    """Profile (or reuse tables), serve on the engine, simulate, and write the report directory."""
    config, base_dir = load_config(request.config, request.overrides)
    config = config.model_copy(update={"engine": REFERENCE_ENGINE})
    prepared = prepare(config, base_dir)
    _check_runnable(prepared)
    device_name = "cpu" if prepared.hardware.kind is DeviceKind.CPU else "cuda"
    out = request.out_dir
    out.mkdir(parents=True, exist_ok=True)
    if config.cost_model.kind != "table" or config.cost_model.tables is None:
        tables = (out / "tables").resolve()
        profile(ProfileRequest(prepared.model.name, device_name, (1,), request.quick, prepared.hardware.name),
                tables, request.progress.mode is ProgressMode.BAR)
        config = _with_tables(config, tables)
        prepared = prepare(config, base_dir)
    metadata = prepared.cost_model.tables.metadata  # type: ignore[attr-defined]
    device = setup_device(device_name, metadata.get("num_threads"))
    dtype = DTYPES[metadata["dtype"]]
    requests = requests_from_workload(prepared.workload.table(), prepared.model, config.seed)
    iterations = run_engine(
        prepared.model, requests, device, dtype, prepared.capacity.num_blocks, config.memory.block_size,
        config.scheduler.params(), prepared.cost_model, config.scheduler.name,
        (config.preemption.name, config.preemption.params()), prepared.max_model_len, config.seed,
    )
    with request.progress.reporter(run_extent(prepared), "simulator") as callback:
        simulated = simulate(prepared, callback)
    table = iteration_table(iterations, prepared.cost_model)
    measured, engine_requests = engine_latencies(requests)
    report = {
        "config": str(request.config),
        "model": prepared.model.name,
        "hardware": prepared.hardware.name,
        "device": metadata.get("device_name"),
        "torch_version": torch.__version__,
        "num_threads": torch.get_num_threads() if device.type == "cpu" else None,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cost_model": prepared.cost_model.describe(),
        "num_requests": len(requests),
        "num_finished_engine": int(len(engine_requests)),
        "num_finished_sim": int(simulated.summary["num_finished"]),
        "iterations_engine": len(iterations),
        "iterations_sim": int(simulated.summary["engine"]["iterations"]),
        "iteration_error": iteration_errors(table),
        "latency": latency_errors(measured, {name: simulated.summary[name] for name in ("ttft_s", "tbt_s", "e2e_s")}),
    }
    table.to_parquet(out / "iterations.parquet", index=False)
    engine_requests.to_parquet(out / "engine_requests.parquet", index=False)
    simulated.requests.to_parquet(out / "sim_requests.parquet", index=False)
    plot(table, measured, simulated.requests, out / "fidelity.png")
    (out / "report.json").write_text(json_text(report))
    return report


def _check_runnable(prepared: PreparedRun) -> None:
    config = prepared.config
    if config.cluster.parallel.tp != 1 or config.cluster.parallel.pp != 1 or config.cluster.replicas != 1:
        raise ConfigError("fidelity: the reference engine runs one replica on one device; set cluster.replicas, "
                          "cluster.parallel.tp and cluster.parallel.pp to 1")
    if prepared.model.is_moe or prepared.model.uses_mla:
        raise ConfigError(f"fidelity: the reference engine runs dense Llama-style models; {prepared.model.name} is not")


def _with_tables(config: ExperimentConfig, tables: Path) -> ExperimentConfig:
    cost_model = config.cost_model.model_copy(update={"kind": "table", "tables": str(tables)})
    return config.model_copy(update={"cost_model": cost_model})


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The headline figures of a report, for the terminal."""
    it = report["iteration_error"]
    lines = [
        f"fidelity: {report['model']} on {report['device']} ({report['num_requests']} requests, "
        f"{it['num_iterations']} measured iterations)",
        f"per-iteration |pred-real|/real: median {it['median']:.1%}, p90 {it['p90']:.1%} "
        f"(mean signed {it['mean_signed']:+.1%})",
        f"{'(sim-real)/real':<16}" + "".join(f"{p:>10}" for p in ("p50", "p90", "p99")),
    ]
    for name, block in report["latency"].items():
        cells = "".join(f"{'-':>10}" if v["relative_error"] is None else f"{v['relative_error']:>+10.1%}"
                        for v in block.values())
        lines.append(f"{name.removesuffix('_s').upper():<16}{cells}")
    return lines
