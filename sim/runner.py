"""Builds a run from a validated config and simulates it.

`prepare` resolves everything that can be wrong with the input (catalog names, parallel plan,
memory, workload) before any simulated time passes; `simulate` then cannot fail on user input.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import simpy

from hwmodels import ConstantCostModel, CostModel, ParallelPlan
from hwmodels.catalog import CatalogError, HardwareSpec, ModelSpec, load_hardware, load_model
from hwmodels.roofline import RooflineCostModel
from policies import PolicyError, create_policy
from sim import __version__
from sim.capacity import KvCapacity, kv_capacity
from sim.cluster import Cluster
from sim.config import ExperimentConfig
from sim.errors import ConfigError, EngineInvariantError
from sim.kv_memory import BlockPool
from sim.metrics import MetricsRecorder
from sim.replica import Replica
from sim.request import Request, RequestState
from sim.results import RunResult, request_table
from sim.summary import summarize
from sim.workload import build_workload, to_requests
from traces import TraceError


@dataclass
class PreparedRun:
    """Everything a simulation needs, resolved and checked."""

    config: ExperimentConfig
    model: ModelSpec
    hardware: HardwareSpec
    plan: ParallelPlan
    cost_model: CostModel
    capacity: KvCapacity
    max_model_len: int
    workload: pd.DataFrame


def prepare(config: ExperimentConfig, base_dir: Path = Path(".")) -> PreparedRun:
    """Resolve catalogs, plan, memory and workload; every user error surfaces here."""
    model = _lookup("model", lambda: load_model(_model_ref(config, base_dir)))
    hardware = _lookup("hardware", lambda: load_hardware(config.hardware))
    plan = ParallelPlan(tp=config.cluster.parallel.tp, pp=config.cluster.parallel.pp)
    _check_plan(plan, model, hardware)
    scheduler_params = config.scheduler.params()
    capacity = kv_capacity(
        model,
        hardware,
        plan,
        config.memory,
        max_batched_tokens=int(scheduler_params.get("max_num_batched_tokens", 8192)),
        max_num_seqs=int(scheduler_params.get("max_num_seqs", 256)),
    )
    max_model_len = config.memory.max_model_len or model.max_position_embeddings
    try:
        workload = build_workload(config.workload, base_dir, config.seed)
    except TraceError as exc:
        raise ConfigError(f"workload: {exc}") from None
    return PreparedRun(config, model, hardware, plan, _cost_model(config, model, hardware, plan), capacity, max_model_len, workload)


def _lookup(key: str, load: Callable[[], Any]) -> Any:
    try:
        return load()
    except CatalogError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _model_ref(config: ExperimentConfig, base_dir: Path) -> str | Path:
    if isinstance(config.model, str):
        return config.model
    path = Path(config.model.hf_config)
    return path if path.is_absolute() else base_dir / path


def _check_plan(plan: ParallelPlan, model: ModelSpec, hardware: HardwareSpec) -> None:
    if plan.tp > hardware.devices_per_node:
        raise ConfigError(
            f"cluster.parallel.tp: {plan.tp} is larger than the {hardware.devices_per_node} devices of one "
            f"{hardware.name} node; tensor parallelism stays within a node"
        )
    if model.num_attention_heads % plan.tp:
        raise ConfigError(
            f"cluster.parallel.tp: {plan.tp} does not divide the {model.num_attention_heads} attention heads of {model.name}"
        )
    if plan.pp > model.num_layers:
        raise ConfigError(f"cluster.parallel.pp: {plan.pp} is more stages than the {model.num_layers} layers of {model.name}")


def _cost_model(config: ExperimentConfig, model: ModelSpec, hardware: HardwareSpec, plan: ParallelPlan) -> CostModel:
    spec = config.cost_model
    if spec.kind == "constant":
        return ConstantCostModel(spec.iteration_s, spec.per_token_s)
    options = {
        key: value
        for key, value in (
            ("iteration_overhead_s", spec.iteration_overhead_s),
            ("compute_efficiency", spec.compute_efficiency),
            ("memory_efficiency", spec.memory_efficiency),
        )
        if value is not None
    }
    return RooflineCostModel(model, hardware, plan, **options)


def simulate(prepared: PreparedRun, progress: Callable[[int, float], None] | None = None) -> RunResult:
    """Run the discrete-event simulation to completion and collect its results."""
    config = prepared.config
    started = time.perf_counter()
    env = simpy.Environment()
    metrics = MetricsRecorder(record_iterations=config.output.iterations)
    requests = to_requests(prepared.workload)
    on_done = (lambda request: progress(cluster.num_done, env.now)) if progress else (lambda request: None)
    try:
        router = create_policy("router", config.cluster.router.name, config.cluster.router.params())
        cluster = Cluster(env, router, requests, metrics, on_done)
        for replica_id in range(config.cluster.replicas):
            preemption = create_policy("preemption", config.preemption.name, config.preemption.params())
            scheduler = create_policy("scheduler", config.scheduler.name, config.scheduler.params(), preemption=preemption)
            kv = BlockPool(prepared.capacity.num_blocks, config.memory.block_size)
            cluster.add_replica(
                Replica(
                    env, replica_id, scheduler, prepared.cost_model, kv, metrics, prepared.max_model_len,
                    cluster.next_arrival_s, cluster.request_done, fast_forward=config.simulation.fast_forward,
                )
            )
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None
    env.run()
    _check_invariants(requests, cluster)
    table = request_table(requests, config.slo)
    summary = summarize(table, metrics.token_gaps(), config.slo, env.now)
    summary["engine"] = {
        "iterations": sum(r.num_iterations for r in cluster.replicas),
        "engine_steps": sum(r.num_engine_steps for r in cluster.replicas),
    }
    summary["memory"] = {"kv_blocks_per_replica": prepared.capacity.num_blocks, **prepared.capacity.as_dict()}
    summary["run"] = {
        "wall_s": time.perf_counter() - started,
        "seed": config.seed,
        "model": prepared.model.name,
        "hardware": prepared.hardware.name,
        "cost_model": prepared.cost_model.describe(),
        "config_hash": config_hash(config),
        "version": __version__,
    }
    return RunResult(config, summary, table, metrics.replica_series(), metrics.system_series(),
                     metrics.iterations() if config.output.iterations else None)


def _check_invariants(requests: list[Request], cluster: Cluster) -> None:
    stuck = [r for r in requests if r.state not in (RequestState.FINISHED, RequestState.REJECTED)]
    if stuck:
        raise EngineInvariantError(f"{len(stuck)} request(s) never finished, first {stuck[0]!r} on replica {stuck[0].replica_id}")
    for replica in cluster.replicas:
        replica.kv.check_conservation()
        if replica.kv.num_used_blocks:
            raise EngineInvariantError(f"replica {replica.replica_id}: {replica.kv.num_used_blocks} KV blocks still held at the end")
    wrong = [r for r in requests if r.state is RequestState.FINISHED and r.num_generated != r.output_tokens]
    if wrong:
        raise EngineInvariantError(f"{wrong[0]!r} finished with {wrong[0].num_generated} tokens generated")


def config_hash(config: ExperimentConfig) -> str:
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def run_experiment(config: ExperimentConfig, base_dir: Path = Path("."), progress: Callable[[int, float], None] | None = None) -> RunResult:
    return simulate(prepare(config, base_dir), progress)


__all__ = ["PreparedRun", "RunResult", "prepare", "run_experiment", "simulate"]
