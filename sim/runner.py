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

import numpy as np
import pandas as pd
import simpy

from servesim.hwmodels import ConstantCostModel, CostModel, ParallelPlan
from servesim.hwmodels.catalog import CatalogError, HardwareSpec, ModelSpec, load_hardware, load_model
from servesim.hwmodels.roofline import RooflineCostModel
from servesim.hwmodels.tables.loading import table_cost_model
from servesim.policies import PolicyError, create_policy, validate_params
from servesim.sim import __version__
from servesim.sim.experiment.capacity import GIB, KvCapacity, kv_capacity
from servesim.sim.experiment.classes import ServiceClass, assign_classes, service_classes
from servesim.sim.engine.cluster import Cluster
from servesim.sim.experiment.config import ExperimentConfig, PolicySpec
from servesim.sim.errors import ConfigError, EngineInvariantError
from servesim.sim.engine.kv_memory import BlockPool
from servesim.sim.reporting.metrics import MetricsRecorder
from servesim.sim.engine.prefix_cache import PrefixCachingBlockPool
from servesim.sim.engine.replica import Replica, ReplicaSetup
from servesim.sim.engine.request import ENDED, Request, RequestState
from servesim.sim.reporting.results import RunResult, request_table
from servesim.sim.reporting.summary import summarize, summarize_classes
from servesim.sim.experiment.workload import build_workload, to_requests
from servesim.traces import TraceError


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
    classes: dict[str, ServiceClass]


def prepare(config: ExperimentConfig, base_dir: Path = Path(".")) -> PreparedRun:
    """Resolve catalogs, plan, memory and workload; every user error surfaces here."""
    model = _lookup("model", lambda: load_model(_model_ref(config, base_dir)))
    hardware = _lookup("hardware", lambda: load_hardware(config.hardware))
    plan = ParallelPlan(tp=config.cluster.parallel.tp, pp=config.cluster.parallel.pp)
    _check_plan(plan, model, hardware)
    scheduler_params = _lookup_policy(lambda: validate_params("scheduler", config.scheduler.name, config.scheduler.params()))
    capacity = kv_capacity(
        model,
        hardware,
        plan,
        config.memory,
        max_batched_tokens=getattr(scheduler_params, "max_num_batched_tokens", 8192),
        max_num_seqs=getattr(scheduler_params, "max_num_seqs", 256),
    )
    max_model_len = config.memory.max_model_len or model.max_position_embeddings
    try:
        workload = build_workload(config.workload, base_dir, config.seed)
    except TraceError as exc:
        raise ConfigError(f"workload: {exc}") from None
    workload = assign_classes(workload, config.workload, random_stream(config.seed, 3))
    classes = service_classes(config, workload)
    return PreparedRun(config, model, hardware, plan, _cost_model(config, model, hardware, plan, base_dir), capacity,
                       max_model_len, workload, classes)


def _lookup(key: str, load: Callable[[], Any]) -> Any:
    try:
        return load()
    except CatalogError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _lookup_policy(load: Callable[[], Any]) -> Any:
    try:
        return load()
    except PolicyError as exc:
        raise ConfigError(f"scheduler: {exc}") from None


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


def _cost_model(
    config: ExperimentConfig, model: ModelSpec, hardware: HardwareSpec, plan: ParallelPlan, base_dir: Path
) -> CostModel:
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
    roofline = RooflineCostModel(model, hardware, plan, **options)
    if spec.kind == "table":
        return _lookup("cost_model.tables", lambda: table_cost_model(spec.tables, base_dir, model, hardware, plan, roofline))
    return roofline


def random_stream(seed: int, *key: int) -> np.random.Generator:
    """An independent generator for one component: the experiment seed plus the component's key.

    Keys 0-2 are the synthetic workload's (arrivals, prompt and output lengths), 3 the class
    assignment, (4, replica) each replica's policies, 5 the router, 6 the shared prefixes.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def simulate(prepared: PreparedRun, progress: Callable[[int, float], None] | None = None) -> RunResult:
    """Run the discrete-event simulation to completion and collect its results."""
    config = prepared.config
    started = time.perf_counter()
    env = simpy.Environment()
    metrics = MetricsRecorder(record_iterations=config.output.iterations)
    requests = to_requests(prepared.workload, prepared.classes)
    on_done = (lambda request: progress(cluster.num_done, env.now)) if progress else (lambda request: None)
    try:
        router = _policy(config.cluster.router, "router", random_stream(config.seed, 5))
        cluster = Cluster(env, router, requests, metrics, on_done)
        for replica_id in range(config.cluster.replicas):
            rng = random_stream(config.seed, 4, replica_id)
            preemption = _policy(config.preemption, "preemption", rng)
            scheduler = _policy(config.scheduler, "scheduler", rng, preemption=preemption)
            setup = _replica_setup(prepared, env, rng)
            cluster.add_replica(
                Replica(env, replica_id, scheduler, prepared.cost_model, setup, metrics, cluster.next_arrival_s,
                        cluster.request_done)
            )
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None
    env.run()
    _check_invariants(requests, cluster)
    table = request_table(requests, prepared.classes)
    token_gaps = metrics.token_gaps()
    summary = summarize(table, token_gaps, config.slo, env.now)
    summary["classes"] = summarize_classes(table, prepared.classes)
    summary["engine"] = {
        "iterations": sum(r.num_iterations for r in cluster.replicas),
        "engine_steps": sum(r.num_engine_steps for r in cluster.replicas),
        "interrupts": sum(r.num_interrupts for r in cluster.replicas),
    }
    summary["memory"] = {"kv_blocks_per_replica": prepared.capacity.num_blocks, **prepared.capacity.as_dict()}
    summary["cache"] = _cache_summary(table, cluster)
    summary["run"] = {
        "wall_s": time.perf_counter() - started,
        "seed": config.seed,
        "model": prepared.model.name,
        "hardware": prepared.hardware.name,
        "replicas": config.cluster.replicas,
        "parallel": {"tp": prepared.plan.tp, "pp": prepared.plan.pp},
        "cost_model": prepared.cost_model.describe(),
        "config_hash": config_hash(config),
        "version": __version__,
    }
    return RunResult(config, summary, table, metrics.replica_series(), metrics.system_series(),
                     metrics.iterations() if config.output.iterations else None, token_gaps)


def _policy(spec: PolicySpec, kind: str, rng: np.random.Generator, **collaborators: Any) -> Any:
    return create_policy(kind, spec.name, spec.params(), rng=rng, **collaborators)


def _replica_setup(prepared: PreparedRun, env: simpy.Environment, rng: np.random.Generator) -> ReplicaSetup:
    config = prepared.config
    capacity = prepared.capacity
    block_size = config.memory.block_size
    if config.cache.prefix_caching:
        eviction = _policy(config.cache.eviction, "eviction", rng)
        kv: BlockPool = PrefixCachingBlockPool(capacity.num_blocks, block_size, eviction, lambda: env.now)
    else:
        kv = BlockPool(capacity.num_blocks, block_size)
    block_bytes = block_size * capacity.kv_bytes_per_token
    host_blocks = int(config.memory.swap_space_gib * GIB) // block_bytes
    swap_block_s = block_bytes / (prepared.hardware.host_link_gbps * 1e9)
    return ReplicaSetup(kv, BlockPool(host_blocks, block_size), prepared.max_model_len, swap_block_s,
                        config.simulation.fast_forward)


def _cache_summary(table: pd.DataFrame, cluster: Cluster) -> dict[str, Any]:
    prompt_tokens = float(table["prompt_tokens"].sum())
    hit_tokens = float(table["cached_tokens"].sum())
    return {
        "prefix_caching": any(r.kv.caches_prefixes for r in cluster.replicas),
        "hit_tokens": int(hit_tokens),
        "hit_rate": hit_tokens / prompt_tokens if prompt_tokens else 0.0,
        "num_swaps": int(table["num_swaps"].sum()),
        "num_dropped": int((table["state"] == "dropped").sum()),
    }


def _check_invariants(requests: list[Request], cluster: Cluster) -> None:
    stuck = [r for r in requests if r.state not in ENDED]
    if stuck:
        raise EngineInvariantError(f"{len(stuck)} request(s) never finished, first {stuck[0]!r} on replica {stuck[0].replica_id}")
    for replica in cluster.replicas:
        for pool in (replica.kv, replica.host):
            pool.check_conservation()
            if pool.num_used_blocks:
                raise EngineInvariantError(f"replica {replica.replica_id}: {pool.num_used_blocks} KV blocks still held at the end")
    wrong = [r for r in requests if r.state is RequestState.FINISHED and r.num_generated != r.output_tokens]
    if wrong:
        raise EngineInvariantError(f"{wrong[0]!r} finished with {wrong[0].num_generated} tokens generated")


def config_hash(config: ExperimentConfig) -> str:
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def run_experiment(config: ExperimentConfig, base_dir: Path = Path("."), progress: Callable[[int, float], None] | None = None) -> RunResult:
    return simulate(prepare(config, base_dir), progress)


__all__ = ["PreparedRun", "RunResult", "prepare", "run_experiment", "simulate"]
