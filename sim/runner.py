"""Builds a run from a validated config and simulates it.

`prepare` resolves everything that can be wrong with the input (catalog names, parallel plan,
memory, workload) before any simulated time passes; `simulate` then cannot fail on user input.
"""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import simpy

from servesim.hwmodels import ConstantCostModel, CostModel, ParallelPlan
from servesim.hwmodels.catalog import CatalogError, HardwareSpec, ModelSpec, load_hardware, load_model
from servesim.hwmodels.expert_parallel import DataParallelExpertCostModel
from servesim.hwmodels.expert_traffic import ExpertTraffic, ExpertTrafficMeter
from servesim.hwmodels.layer_slices import LayerSliceCostModel
from servesim.hwmodels.plan_rules import plan_problems
from servesim.hwmodels.roofline import DEFAULT_ITERATION_OVERHEAD_S, RooflineCostModel
from servesim.hwmodels.tables import TableRangeWarning
from servesim.hwmodels.tables.loading import table_cost_model
from servesim.hwmodels.tables.shipped import auto_cost_model_kind
from servesim.policies import PolicyError, create_policy, validate_params
from servesim.policies.registry import get_policy
from servesim.policies.schedulers.budget import DEFAULT_MAX_NUM_BATCHED_TOKENS, DEFAULT_MAX_NUM_SEQS
from servesim.sim import __version__
from servesim.sim.engine.cluster import ClosedLoop, Cluster
from servesim.sim.engine.collector import simulation_collector
from servesim.sim.engine.disaggregation import Disaggregation
from servesim.sim.engine.dp_group import DataParallelGroup, lockstep_group
from servesim.sim.engine.host_swap import HostPorts
from servesim.sim.engine.intra_gpu import IntraGpuReplica
from servesim.sim.engine.kv_memory import BlockPool
from servesim.sim.engine.overheads import ApiServerPath, EngineOverheadCostModel, fitted_overheads, vllm_capture_sizes
from servesim.sim.engine.placement import Placement
from servesim.sim.engine.prefix_cache import PrefixCachingBlockPool
from servesim.sim.engine.replica import Replica, ReplicaSetup
from servesim.sim.engine.request import Request
from servesim.sim.engine.role_switching import RoleSwitcher
from servesim.sim.engine.share_cluster import ShareCluster
from servesim.sim.errors import ConfigError, EngineInvariantError
from servesim.sim.experiment.capacity import KvCapacity, check_pool_blocks, kv_capacity, model_len
from servesim.sim.experiment.classes import ServiceClass, service_classes
from servesim.sim.experiment.config import ExperimentConfig, ParallelConfig, PolicySpec, TopologyConfig
from servesim.sim.experiment.intra_gpu import check_intra_gpu, device_factory, intra_gpu_summary, share_model
from servesim.sim.experiment.moe import MoeSetup, moe_setup, offloaded_weight_bytes
from servesim.sim.experiment.pools import ResolvedPool, is_disaggregated, pool_error, resolved_pools
from servesim.sim.experiment.workload import Workload, build_workload, request_stream, think_times
from servesim.sim.network import Network, run_to_last_event
from servesim.sim.network.results import has_traffic, network_summary, write_link_series
from servesim.sim.pool_setup import (
    build_topology,
    check_decode_pools,
    check_model_lens,
    disaggregate,
    has_network,
    pool_placements,
)
from servesim.sim.reporting.metrics import MetricsRecorder
from servesim.sim.reporting.pools_summary import (
    DisaggregationRecords,
    disaggregation_summary,
    pools_summary,
)
from servesim.sim.reporting.progress import EVENTS_PER_BEAT, RunExtent, run_with_heartbeat
from servesim.sim.reporting.request_records import RequestRecorder
from servesim.sim.reporting.results import RunFiles, RunResult
from servesim.sim.reporting.role_summary import role_switching_summary, write_role_tables
from servesim.sim.reporting.spill import read_table
from servesim.sim.reporting.steady_state import steady_state
from servesim.sim.reporting.summary import summarize, summarize_classes
from servesim.sim.reporting.token_records import TokenRecorder
from servesim.sim.role_setup import check_switchable_pools, role_switcher
from servesim.traces import TraceError


@dataclass
class PreparedPool:
    """One pool resolved and checked: its hardware, plan, memory and iteration-time model."""

    spec: ResolvedPool
    hardware: HardwareSpec
    plan: ParallelPlan
    cost_model: CostModel
    capacity: KvCapacity
    max_model_len: int
    api: ApiServerPath | None
    expert_traffic: ExpertTraffic | None = None
    """A MoE model's expert weights read and loaded per iteration (the summary's `moe` block)."""


@dataclass
class PreparedRun:
    """Everything a simulation needs, resolved and checked; the single-pool fields are the first pool's."""

    config: ExperimentConfig
    model: ModelSpec
    hardware: HardwareSpec
    plan: ParallelPlan
    cost_model: CostModel
    capacity: KvCapacity
    max_model_len: int
    workload: Workload
    classes: dict[str, ServiceClass]
    api: ApiServerPath | None = None
    pools: tuple[PreparedPool, ...] = ()
    topology: Any = None
    """The network's topology (`servesim.sim.network`): a disaggregated run's, or one that sets `cluster.topology`."""
    base_dir: Path = Path(".")
    """The folder the config's relative paths start from (a worker process prepares the run again)."""


def prepare(config: ExperimentConfig, base_dir: Path = Path(".")) -> PreparedRun:
    """Resolve catalogs, plans, memory and workload; every user error surfaces here."""
    if config.sweep is not None:
        raise ConfigError(f"config {config.name!r} has a `sweep:` block: run it with `simrun sweep` (or sweep() in "
                          f"Python), which runs each of its points; or remove the block to run the base config")
    model = _lookup("model", lambda: _load_model(config, base_dir))
    pools = tuple(_prepare_pool(config, pool, model, base_dir) for pool in resolved_pools(config))
    check_intra_gpu(config)
    max_model_len = min(pool.max_model_len for pool in pools)
    try:
        workload = build_workload(config.workload, base_dir, config.seed, max_model_len,
                                  lambda: random_stream(config.seed, 3))
    except TraceError as exc:
        raise ConfigError(f"workload: {exc}") from None
    classes = service_classes(config, workload.class_names)
    topology = None
    if is_disaggregated(config):
        check_model_lens([(pool.spec, pool.max_model_len) for pool in pools], workload)
        checked = [(pool.spec, pool.capacity) for pool in pools]
        check = check_decode_pools if config.cluster.role_switching is None else check_switchable_pools
        max_model_len = check(checked, workload, max_model_len)
    if has_network(config):
        topology = build_topology(config, [(pool.spec, pool.hardware, pool.plan) for pool in pools])
    first = pools[0]
    return PreparedRun(config, model, first.hardware, first.plan, first.cost_model, first.capacity, max_model_len,
                       workload, classes, next(pool.api for pool in pools if pool.spec.is_entry), pools, topology,
                       base_dir.resolve())


def _prepare_pool(config: ExperimentConfig, pool: ResolvedPool, model: ModelSpec, base_dir: Path) -> PreparedPool:
    """One pool's hardware, plan, memory and cost model; errors name the pool's keys."""
    try:
        hardware = _lookup("hardware", lambda: load_hardware(pool.hardware))
        parallel = pool.parallel
        plan = ParallelPlan(tp=parallel.tp, pp=parallel.pp, ep=parallel.ep)
        problems = plan_problems(plan, model, hardware)
        if problems:
            raise ConfigError("; ".join(problems))
        scheduler_params = _lookup_policy(
            lambda: validate_params("scheduler", pool.scheduler.name, pool.scheduler.params())
        )
        moe = moe_setup(config.cost_model.moe, model, [plan, *_experts_plan(parallel, pool.replicas, model, plan)],
                        base_dir, config.cost_model.kind)
        capacity = kv_capacity(
            model,
            hardware,
            plan,
            pool.memory,
            max_batched_tokens=getattr(scheduler_params, "max_num_batched_tokens", DEFAULT_MAX_NUM_BATCHED_TOKENS),
            max_num_seqs=getattr(scheduler_params, "max_num_seqs", DEFAULT_MAX_NUM_SEQS),
            offloaded_bytes=offloaded_weight_bytes(model, plan, moe),
        )
        check_pool_blocks(capacity, pool.replicas)
        max_model_len = model_len(pool.memory, model)
        kernels = _cost_model(config, model, hardware, plan, base_dir, parallel, pool.replicas, moe)
        if getattr(get_policy("scheduler", pool.scheduler.name).cls, "uses_layer_slices", False):
            kernels = _layered(config, pool, model, kernels, scheduler_params)
        cost_model, api = _engine_time(config, kernels, hardware.name, getattr(scheduler_params, "max_num_seqs", 256))
    except ConfigError as exc:
        raise ConfigError(pool_error(pool, str(exc))) from None
    return PreparedPool(pool, hardware, plan, cost_model, capacity, max_model_len, api,
                        _expert_traffic(model, plan, moe))


def _layered(config: ExperimentConfig, pool: ResolvedPool, model: ModelSpec, kernels: CostModel, params: Any
             ) -> CostModel:
    """Kernel times for a scheduler that runs prompts through groups of layers (layered prefill)."""
    groups = getattr(params, "num_layer_groups", 1)
    if groups > model.num_layers:
        raise ConfigError(f"scheduler.num_layer_groups: {groups} is more groups than the {model.num_layers} layers "
                          f"of {model.name}; use at most {model.num_layers}")
    if pool.parallel.ep_across_replicas and pool.replicas > 1:
        raise ConfigError(f"scheduler: {pool.scheduler.name} runs prompts through groups of layers, which the "
                          "data-parallel lockstep of cluster.parallel.ep_across_replicas does not model; turn one off")
    if config.engine.intra_gpu_split is not None:
        raise ConfigError(f"scheduler: {pool.scheduler.name} runs prompts through groups of layers, which the "
                          "prefill and decode loops of engine.intra_gpu_split do not model; turn one off")
    return LayerSliceCostModel(kernels, model.num_layers)


def _expert_traffic(model: ModelSpec, plan: ParallelPlan, moe: MoeSetup | None) -> ExpertTraffic | None:
    if not model.is_moe:
        return None
    if moe is None:
        return ExpertTraffic(model)
    routing = moe.routing(plan.ep)
    return ExpertTraffic(model, routing, moe.cache(routing))


def _engine_time(config: ExperimentConfig, kernels: CostModel, hardware: str, max_num_seqs: int
                 ) -> tuple[CostModel, ApiServerPath | None]:
    """Wrap the kernel times in the engine's own time (`engine` section); the constant model stays ideal."""
    engine = config.engine
    if config.cost_model.kind == "constant":
        return kernels, None
    fitted = fitted_overheads(hardware, engine.version)
    sizes = tuple(engine.cuda_graph_sizes or vllm_capture_sizes(max_num_seqs)) if engine.cuda_graphs else ()
    per_iteration = fitted.cpu_per_iteration_s if engine.cpu_per_iteration_s is None else engine.cpu_per_iteration_s
    per_sequence = fitted.cpu_per_sequence_s if engine.cpu_per_sequence_s is None else engine.cpu_per_sequence_s
    per_eager = (fitted.cpu_per_eager_iteration_s if engine.cpu_per_eager_iteration_s is None
                 else engine.cpu_per_eager_iteration_s)
    api = None
    if engine.api_server:
        api = ApiServerPath(*(fitted_value if value is None else value for value, fitted_value in (
            (engine.api_fixed_s, fitted.api_fixed_s),
            (engine.api_per_prompt_token_s, fitted.api_per_prompt_token_s),
            (engine.api_stream_out_s, fitted.api_stream_out_s),
        )))
    if not sizes and not per_iteration and not per_sequence and not per_eager:
        return kernels, api
    return EngineOverheadCostModel(kernels, sizes, per_iteration, per_sequence, per_eager), api


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


def _load_model(config: ExperimentConfig, base_dir: Path) -> ModelSpec:
    """The catalog or HuggingFace model, in the weight and KV formats the config asks for."""
    model = load_model(_model_ref(config, base_dir))
    if isinstance(config.model, str):
        return model
    return model.served_in(weight_dtype=config.model.weight_dtype, kv_dtype=config.model.kv_dtype)


def _model_ref(config: ExperimentConfig, base_dir: Path) -> str | Path:
    if isinstance(config.model, str):
        return config.model
    if config.model.name is not None:
        return config.model.name
    assert config.model.hf_config is not None  # ModelRef's validator: exactly one of name and hf_config
    path = Path(config.model.hf_config)
    return path if path.is_absolute() else base_dir / path


def _experts_plan(parallel: ParallelConfig, replicas: int, model: ModelSpec, plan: ParallelPlan
                  ) -> list[ParallelPlan]:
    """The plan a MoE model's experts run under when they are split over all DP ranks, or none."""
    if parallel.ep_across_replicas and replicas > 1 and model.is_moe:
        devices = plan.tp * replicas
        return [ParallelPlan(tp=devices, pp=plan.pp, ep=devices)]
    return []


def _with_nodes(hardware: HardwareSpec, topology: TopologyConfig) -> HardwareSpec:
    """`hardware` with `cluster.topology`'s nodes and inter-node links, where an EP group's all-to-all
    crosses nodes (its intra-node link stays `cost_model.link_gbps`'s, as the TP collectives')."""
    inter = topology.inter_node
    if topology.devices_per_node is None and inter.gbps is None and inter.latency_us is None:
        return hardware
    return replace(
        hardware, devices_per_node=topology.devices_per_node or hardware.devices_per_node,
        inter_node_link_gbps=inter.gbps or hardware.inter_node_link_gbps,
        inter_node_latency_us=hardware.inter_node_latency_us if inter.latency_us is None else inter.latency_us)


def _cost_model(
    config: ExperimentConfig, model: ModelSpec, hardware: HardwareSpec, plan: ParallelPlan, base_dir: Path,
    parallel: ParallelConfig, replicas: int, moe: MoeSetup | None = None,
) -> CostModel:
    spec = config.cost_model
    if spec.kind == "constant":
        return ConstantCostModel(spec.iteration_s, spec.per_token_s)
    overhead_s = DEFAULT_ITERATION_OVERHEAD_S if spec.iteration_overhead_s is None else spec.iteration_overhead_s
    own_link = spec.link_gbps is not None or spec.link_latency_us is not None
    hardware = _with_nodes(hardware.with_link(spec.link_gbps, spec.link_latency_us), config.cluster.topology)
    experts = next(iter(_experts_plan(parallel, replicas, model, plan)), None)
    kind = "roofline" if moe is not None else spec.kind
    if kind == "auto":  # tables the config names, else the shipped ones where they cover the run
        tp_degrees = {p.tp for p in (plan, experts) if p is not None}
        named = spec.tables is not None or spec.source is not None
        kind = "table" if named else auto_cost_model_kind(hardware.name, model.name, tp_degrees)

    def kernels(plan: ParallelPlan) -> CostModel:
        routing = moe.routing(plan.ep) if moe is not None else None
        roofline = RooflineCostModel(model, hardware, plan, iteration_overhead_s=overhead_s,
                                     compute_efficiency=spec.compute_efficiency,
                                     memory_efficiency=spec.memory_efficiency, routing=routing,
                                     cache=moe.cache(routing) if moe is not None and routing is not None else None)
        if kind == "table":
            with warnings.catch_warnings():
                if spec.kind == "auto":  # the headline and summary name the roofline-priced operators
                    warnings.filterwarnings("ignore", message=".*: no measurements of ", category=TableRangeWarning)
                return _lookup("cost_model.tables", lambda: table_cost_model(
                    spec.tables, base_dir, model, hardware, plan, roofline, spec.source, spec.moe_distribution,
                    measured_collectives=not own_link,
                ))
        return roofline

    if experts is not None:
        return DataParallelExpertCostModel(kernels(plan), kernels(experts), replicas, experts.tp,
                                           model.experts_per_token)
    return kernels(plan)


def random_stream(seed: int, *key: int) -> np.random.Generator:
    """An independent generator for one component: the experiment seed plus the component's key.

    Keys 0-2 are the synthetic workload's (arrivals, prompt and output lengths), 3 the class
    assignment, (4, replica) each replica's policies, 5 the router, 6 the shared prefixes, 7 the
    closed-loop think times, 8 the transfer policy.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def simulate(prepared: PreparedRun, progress: Callable[[int, float], None] | None = None) -> RunResult:
    """Run the discrete-event simulation to completion and collect its results.

    `progress(num_done, now)`, if given, is called on every finished request and every few
    thousand events (see `servesim.sim.reporting.progress`); it never changes the results.
    Requests are made as they arrive and leave only their row behind when they end; rows, token
    gaps and time series go to files in a temporary folder that the result keeps (see README,
    "Bounded memory"). With `simulation.workers` above 1 and replicas that nothing couples, the
    replicas are simulated in that many processes and their outputs merged (`servesim.sim.parallel`).
    """
    from servesim.sim.parallel.run import simulate_in_parallel, workers_to_use

    workers = workers_to_use(prepared)
    if workers > 1:
        return simulate_in_parallel(prepared, workers, progress)
    started = time.perf_counter()
    engine = run_engine(prepared, progress)
    config = prepared.config
    files = engine.files
    table = read_table(files.requests)
    replicas = engine.replicas
    engine_block = engine_counts(replicas)
    if engine.lockstep is not None:
        engine_block["dp_lockstep"] = engine.lockstep.describe()
    middle: dict[str, Any] = {}
    if config.engine.intra_gpu_split is not None:
        middle["intra_gpu"] = intra_gpu_summary(config.engine.intra_gpu_split, replicas)
    tail: dict[str, Any] = {}
    if engine.meters:
        tail["moe"] = _moe_summary(engine.meters)
    if config.cluster.pools is not None:
        tail["pools"] = pools_summary(prepared.pools, replicas, table, files.tables, engine.sim_time_s)
    disaggregation = engine.disaggregation
    if disaggregation is not None:
        tail["disaggregation"] = disaggregation_summary(config.cluster.transfer.name, table, files.tables,
                                                        disaggregation)
    network = engine.network
    if network is not None and has_traffic(network):
        tail["network"] = network_summary(network, engine.sim_time_s)
    if engine.switcher is not None and config.cluster.role_switching is not None:
        tail["role_switching"] = role_switching_summary(config.cluster.role_switching, engine.switcher)
    prefix_caching = any(r.kv.caches_prefixes for r in replicas)
    summary = run_summary(prepared, table, files, engine.sim_time_s, engine_block, prefix_caching, len(replicas),
                          started, middle, tail)
    return RunResult(config, summary, files)


@dataclass
class EngineRun:
    """A finished simulation before its summary: its files and what the summary reads off the engine."""

    files: RunFiles
    num_requests: int
    sim_time_s: float
    """Time of the last real event (a network's stale timers do not count)."""
    replicas: list[Replica]
    lockstep: DataParallelGroup | None
    disaggregation: Disaggregation | None
    network: Network | None
    switcher: RoleSwitcher | None
    meters: dict[str, ExpertTrafficMeter]


@dataclass(frozen=True)
class Share:
    """The part of a run one worker process simulates (`servesim.sim.parallel`): some replicas and
    the requests routed to them. Every arrival still passes through its cluster, so the replicas see
    the same next arrival times, in the same event order, as in the whole run."""

    replica_ids: tuple[int, ...]
    destinations: np.ndarray
    """The replica of every request of the run, by request id (routed once, before the workers start)."""
    directory: Path
    """Where its tables go (the parent process's folder, which outlives the worker)."""

    def owns(self) -> np.ndarray:
        """By request id: whether this share simulates the request."""
        return np.isin(self.destinations, self.replica_ids)


def run_engine(prepared: PreparedRun, progress: Callable[[int, float], None] | None = None,
               share: Share | None = None) -> EngineRun:
    """Simulate the whole run, or with `share` only its replicas (a worker process's part)."""
    config = prepared.config
    env = simpy.Environment()
    metrics = MetricsRecorder(config.output.iterations, share.directory if share is not None else None)
    stream_out_s = prepared.api.stream_out_s if prepared.api is not None else 0.0
    owned = share.owns() if share is not None else None
    records = RequestRecorder(metrics.directory / "requests.parquet", prepared.classes, stream_out_s,
                              ids=None if owned is None else np.flatnonzero(owned))
    if config.output.per_token:
        metrics.tokens = TokenRecorder(metrics.directory / "tokens.parquet", stream_out_s)
    num_requests = len(prepared.workload) if owned is None else int(owned.sum())
    cluster: Cluster  # made below; on_done runs only once the simulation has started
    switcher: RoleSwitcher | None = None

    def on_done(request: Request) -> None:
        records.record(request)
        if switcher is not None:
            switcher.request_done(request)
        if progress is not None:
            progress(cluster.num_done, env.now)

    try:
        router = _policy(config.cluster.router, "router", random_stream(config.seed, 5))
        closed_loop = None
        if config.workload.clients is not None:
            closed_loop = ClosedLoop(config.workload.clients.concurrency,
                                     think_times(config.workload, random_stream(config.seed, 7)))
        requests = request_stream(prepared.workload.chunks(), prepared.classes)
        if share is None or owned is None:
            cluster = Cluster(env, router, requests, metrics, on_done, prepared.api, closed_loop)
        else:
            cluster = ShareCluster(env, router, requests, metrics, on_done, prepared.api,
                                   share.destinations, owned)
        lockstep = lockstep_group(env, prepared.cost_model)
        network = Network(env, prepared.topology) if prepared.topology is not None else None
        meters = _add_replicas(prepared, env, cluster, metrics, lockstep, network,
                               None if share is None else frozenset(share.replica_ids))
        disaggregation = None
        handoff_records = None
        if network is not None and is_disaggregated(config):
            transfer = _policy(config.cluster.transfer, "transfer", random_stream(config.seed, 8))
            handoff_records = DisaggregationRecords(metrics.directory)
            disaggregation = disaggregate(env, prepared, network, cluster.replicas, transfer, handoff_records)
            if config.cluster.role_switching is not None:
                switcher = role_switcher(env, config, cluster, disaggregation)
    except PolicyError as exc:
        raise ConfigError(str(exc)) from None
    with simulation_collector():
        end_s = _run(env, network, None if progress is None else lambda: progress(cluster.num_done, env.now))
    _check_invariants(cluster, disaggregation)
    metrics.finish()
    tables = handoff_records.close() if handoff_records is not None else {}
    if network is not None and has_traffic(network):
        write_link_series(network, metrics.directory / "links.parquet")
        tables["links"] = metrics.directory / "links.parquet"
    if switcher is not None:
        tables |= write_role_tables(switcher, metrics.directory)
    if metrics.tokens is not None:
        tables["tokens"] = metrics.tokens.close()
    files = RunFiles(records.close(num_requests), metrics.replica_series_path, metrics.system_series_path,
                     metrics.gaps, metrics.iterations_path, keep_alive=metrics, tables=tables)
    return EngineRun(files, num_requests, end_s, cluster.replicas, lockstep, disaggregation, network, switcher, meters)


def _add_replicas(prepared: PreparedRun, env: simpy.Environment, cluster: Cluster, metrics: MetricsRecorder,
                  lockstep: DataParallelGroup | None, network: Network | None, owned: frozenset[int] | None
                  ) -> dict[str, ExpertTrafficMeter]:
    """Every pool's replicas (only those in `owned`, if given), each with its own policies; the
    pools' expert-traffic meters. A replica's id, and so its random generator, is its place in the
    whole cluster."""
    config = prepared.config
    split = config.engine.intra_gpu_split
    placements = pool_placements(prepared)
    meters: dict[str, ExpertTrafficMeter] = {}
    replica_id = -1
    for pool in prepared.pools:
        meter = None
        if pool.expert_traffic is not None:
            meter = meters[pool.spec.name] = ExpertTrafficMeter(pool.expert_traffic)
        sm_shares = None if split is None else share_model(split, pool.cost_model, prepared.model, pool.hardware,
                                                           pool.plan)
        for _ in range(pool.spec.replicas):
            replica_id += 1
            if owned is not None and replica_id not in owned:
                continue
            rng = random_stream(config.seed, 4, replica_id)
            preemption = _policy(config.preemption, "preemption", rng)
            scheduler = _policy(pool.spec.scheduler, "scheduler", rng, preemption=preemption)
            setup = _replica_setup(prepared, pool, env, rng, lockstep, placements[replica_id], meter, network)
            replica: Replica
            if split is None or sm_shares is None:
                replica = Replica(env, replica_id, scheduler, pool.cost_model, setup, metrics,
                                  cluster.next_arrival_s, cluster.request_done)
            else:
                decode_scheduler = _policy(pool.spec.scheduler, "scheduler", rng, preemption=preemption)
                replica = IntraGpuReplica(env, replica_id, (scheduler, decode_scheduler), pool.cost_model, setup,
                                          metrics, cluster.next_arrival_s, cluster.request_done,
                                          device_factory(env, split, sm_shares, rng))
            cluster.add_replica(replica, entry=pool.spec.is_entry)
    return meters


def engine_counts(replicas: list[Replica]) -> dict[str, Any]:
    """The summary's `engine` block: iterations, engine steps and interrupts of every replica."""
    return {
        "iterations": sum(r.num_iterations for r in replicas),
        "engine_steps": sum(r.num_engine_steps for r in replicas),
        "interrupts": sum(r.num_interrupts for r in replicas),
    }


def run_summary(prepared: PreparedRun, table: pd.DataFrame, files: RunFiles, sim_time_s: float,
                engine: dict[str, Any], prefix_caching: bool, num_replicas: int, started: float,
                middle: dict[str, Any] | None = None, tail: dict[str, Any] | None = None) -> dict[str, Any]:
    """`summary.json` of a run from its request table, token gaps and engine counts; `middle` and
    `tail` are the blocks only some runs have (after `engine`, and after `cache`)."""
    config = prepared.config
    summary = summarize(table, files.gaps, config.slo, sim_time_s)
    summary["classes"] = summarize_classes(table, prepared.classes)
    workload = config.workload
    if workload.clients is not None or workload.warmup_s is not None or workload.warmup_requests is not None:
        summary["steady_state"] = steady_state(table, workload.warmup_s, workload.warmup_requests)
    summary["engine"] = engine
    summary |= middle or {}
    summary["memory"] = {"kv_blocks_per_replica": prepared.capacity.num_blocks, **prepared.capacity.as_dict()}
    summary["cache"] = _cache_summary(table, prefix_caching)
    summary |= tail or {}
    auto = config.cost_model.kind == "auto"
    summary["run"] = {
        "wall_s": time.perf_counter() - started,
        "seed": config.seed,
        "model": prepared.model.name,
        "hardware": prepared.hardware.name,
        "replicas": num_replicas,
        "parallel": {"tp": prepared.plan.tp, "pp": prepared.plan.pp},
        "cost_model": {**prepared.cost_model.describe(), **({"chosen_by": "auto"} if auto else {})},
        "config_hash": config_hash(config),
        "version": __version__,
    }
    return summary


def _run(env: simpy.Environment, network: Network | None, beat: Callable[[], None] | None) -> float:
    """Simulate to the end; returns the time of the last real event (a network's stale timers do not count)."""
    if network is not None:
        return run_to_last_event(env, network, beat, EVENTS_PER_BEAT)
    if beat is None:
        env.run()
    else:
        run_with_heartbeat(env, beat)
    return float(env.now)


def run_extent(prepared: PreparedRun) -> RunExtent:
    """What a run will simulate, for its progress: the number of requests and the last arrival."""
    workload = prepared.workload
    closed_loop = prepared.config.workload.clients is not None
    return RunExtent(len(workload), None if closed_loop else workload.last_arrival_s)


def _policy(spec: PolicySpec, kind: str, rng: np.random.Generator, **collaborators: Any) -> Any:
    return create_policy(kind, spec.name, spec.params(), rng=rng, **collaborators)


def _replica_setup(prepared: PreparedRun, pool: PreparedPool, env: simpy.Environment, rng: np.random.Generator,
                   lockstep: DataParallelGroup | None, placement: Placement, meter: ExpertTrafficMeter | None,
                   network: Network | None) -> ReplicaSetup:
    config = prepared.config
    capacity = pool.capacity
    block_size = pool.spec.memory.block_size
    if config.cache.prefix_caching:
        eviction = _policy(config.cache.eviction, "eviction", rng)
        kv: BlockPool = PrefixCachingBlockPool(capacity.num_blocks, block_size, eviction, lambda: env.now)
    else:
        kv = BlockPool(capacity.num_blocks, block_size)
    swap_block_s = capacity.block_bytes / (pool.hardware.host_link_gbps * 1e9)
    host_ports = HostPorts(network, placement.devices, capacity.block_bytes) if network is not None else None
    return ReplicaSetup(kv, BlockPool(capacity.swap_blocks, block_size), prepared.max_model_len, swap_block_s,
                        config.simulation.fast_forward,
                        async_scheduling=config.engine.async_scheduling and config.cost_model.kind != "constant",
                        lockstep=lockstep, expert_meter=meter, placement=placement, host_ports=host_ports)


def _moe_summary(meters: dict[str, ExpertTrafficMeter]) -> dict[str, Any]:
    """The summary's `moe` block: one pool's, or with several pools the expert reads summed and each
    pool's block under `pools`."""
    blocks = {name: meter.summary() for name, meter in meters.items()}
    if len(blocks) == 1:
        return next(iter(blocks.values()))
    return {key: sum(block[key] for block in blocks.values()) for key in ("expert_weight_bytes_read", "expert_reads")
            } | {"pools": blocks}


def _cache_summary(table: pd.DataFrame, prefix_caching: bool) -> dict[str, Any]:
    prompt_tokens = float(table["prompt_tokens"].sum())
    hit_tokens = float(table["cached_tokens"].sum())
    return {
        "prefix_caching": prefix_caching,
        "hit_tokens": int(hit_tokens),
        "hit_rate": hit_tokens / prompt_tokens if prompt_tokens else 0.0,
        "num_swaps": int(table["num_swaps"].sum()),
        "num_dropped": int((table["state"] == "dropped").sum()),
    }


def _check_invariants(cluster: Cluster, disaggregation: Disaggregation | None) -> None:
    """Nothing left in the replicas or on its way between them, no token counted outstanding, and
    every KV block back; whether every request ended (none lost) is checked when the request table
    is closed (`RequestRecorder.close`)."""
    if disaggregation is not None and disaggregation.num_in_flight:
        raise EngineInvariantError(f"{disaggregation.num_in_flight} request(s) still on their way from a prefill "
                                   "to a decode replica at the end")
    for replica in cluster.replicas:
        replica.check_drained()
        if replica.outstanding_tokens:
            raise EngineInvariantError(f"replica {replica.replica_id}: {replica.outstanding_tokens} tokens still "
                                       "counted outstanding at the end (routers read this count)")
    for replica in cluster.replicas:
        for pool in (replica.kv, replica.host):
            pool.check_conservation()
            if pool.num_used_blocks:
                raise EngineInvariantError(
                    f"replica {replica.replica_id}: {pool.num_used_blocks} KV blocks still held at the end"
                )


def config_hash(config: ExperimentConfig) -> str:
    """A fingerprint of what the run computes: `simulation.workers` is left out, as it changes only
    how many processes compute the same results."""
    data = config.model_dump(mode="json")
    data["simulation"].pop("workers", None)
    canonical = json.dumps(data, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def run_experiment(config: ExperimentConfig, base_dir: Path = Path("."),
                   progress: Callable[[int, float], None] | None = None) -> RunResult:
    return simulate(prepare(config, base_dir), progress)


__all__ = ["PreparedRun", "RunResult", "Share", "prepare", "run_engine", "run_experiment", "run_extent", "simulate"]
