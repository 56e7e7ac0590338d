"""Runs the engine directly (no config, no catalogs) for scenario and property tests."""
from __future__ import annotations

from dataclasses import dataclass

import simpy

from hwmodels import CostModel
from policies import create_policy
from sim.cluster import Cluster
from sim.kv_memory import BlockPool
from sim.metrics import MetricsRecorder
from sim.replica import Replica
from sim.request import Request


@dataclass
class EngineRun:
    requests: list[Request]
    cluster: Cluster
    metrics: MetricsRecorder
    end_s: float


def run_engine(
    specs: list[tuple[float, int, int]],
    cost_model: CostModel,
    num_blocks: int = 1000,
    block_size: int = 16,
    scheduler: dict | None = None,
    preemption: dict | None = None,
    replicas: int = 1,
    max_model_len: int = 1_000_000,
    fast_forward: bool = True,
    record_iterations: bool = False,
) -> EngineRun:
    """Serve requests given as (arrival_s, prompt_tokens, output_tokens)."""
    env = simpy.Environment()
    metrics = MetricsRecorder(record_iterations=record_iterations)
    requests = [Request(i, a, p, o) for i, (a, p, o) in enumerate(specs)]
    cluster = Cluster(env, create_policy("router", "round_robin", {}), requests, metrics)
    for replica_id in range(replicas):
        pre = create_policy("preemption", "recompute", preemption or {})
        sched = create_policy("scheduler", "vllm", scheduler or {}, preemption=pre)
        cluster.add_replica(
            Replica(env, replica_id, sched, cost_model, BlockPool(num_blocks, block_size), metrics, max_model_len,
                    cluster.next_arrival_s, cluster.request_done, fast_forward=fast_forward)
        )
    env.run()
    return EngineRun(requests, cluster, metrics, env.now)
