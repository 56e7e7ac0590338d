"""Runs the engine directly (no config, no catalogs) for scenario and property tests."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simpy

from servesim.hwmodels import CostModel
from servesim.policies import create_policy
from servesim.sim.engine.cluster import Cluster
from servesim.sim.engine.dp_group import DataParallelGroup, LockstepPricing
from servesim.sim.engine.kv_memory import BlockPool
from servesim.sim.engine.prefix_cache import PrefixCachingBlockPool
from servesim.sim.engine.replica import Replica, ReplicaSetup
from servesim.sim.engine.request import Request
from servesim.sim.reporting.metrics import MetricsRecorder
from servesim.sim.reporting.token_records import TokenRecorder


@dataclass
class EngineRun:
    requests: list[Request]
    cluster: Cluster
    metrics: MetricsRecorder
    end_s: float
    lockstep: DataParallelGroup | None = None


def run_engine(
    specs: list[tuple[float, int, int]] | list[Request],
    cost_model: CostModel,
    num_blocks: int = 1000,
    block_size: int = 16,
    scheduler: dict | None = None,
    scheduler_name: str = "vllm",
    preemption: dict | None = None,
    preemption_name: str = "recompute",
    replicas: int = 1,
    max_model_len: int = 1_000_000,
    fast_forward: bool = True,
    record_iterations: bool = False,
    host_blocks: int = 0,
    swap_block_s: float = 0.0,
    prefix_caching: bool = False,
    eviction: str = "lru",
    router: str = "round_robin",
    router_params: dict | None = None,
    seed: int = 0,
    lockstep: bool = False,
    async_scheduling: bool = False,
    progress_observed: bool | None = None,
    record_tokens: bool = False,
) -> EngineRun:
    """Serve requests given as (arrival_s, prompt_tokens, output_tokens) or as Request objects.

    `lockstep`: the replicas are the data-parallel ranks of one engine, stepping together.
    `progress_observed` overrides what the router declares (whether decode stretches show their
    progress at every arrival), to test both ways of fast-forwarding with any router.
    `record_tokens`: every token's time goes to `metrics.tokens` (`output.per_token`)."""
    env = simpy.Environment()
    metrics = MetricsRecorder(record_iterations=record_iterations)
    if record_tokens:
        metrics.tokens = TokenRecorder(metrics.directory / "tokens.parquet")
    requests = [s if isinstance(s, Request) else Request(i, *s) for i, s in enumerate(specs)]
    rng = np.random.default_rng(seed)
    cluster = Cluster(env, create_policy("router", router, router_params or {}, rng=rng), requests, metrics)
    group = DataParallelGroup(env, LockstepPricing(cost_model)) if lockstep else None
    for replica_id in range(replicas):
        pre = create_policy("preemption", preemption_name, preemption or {}, rng=rng)
        sched = create_policy("scheduler", scheduler_name, scheduler or {}, preemption=pre, rng=rng)
        if prefix_caching:
            kv = PrefixCachingBlockPool(num_blocks, block_size, create_policy("eviction", eviction, {}),
                                        lambda: env.now)
        else:
            kv = BlockPool(num_blocks, block_size)
        setup = ReplicaSetup(kv, BlockPool(host_blocks, block_size), max_model_len, swap_block_s, fast_forward,
                             async_scheduling=async_scheduling, lockstep=group)
        cluster.add_replica(
            Replica(env, replica_id, sched, cost_model, setup, metrics, cluster.next_arrival_s, cluster.request_done)
        )
        if progress_observed is not None:
            cluster.replicas[-1].progress_observed = progress_observed
    env.run()
    return EngineRun(requests, cluster, metrics, env.now, group)
