"""Setting up a run's pools: where their replicas sit, the checks a disaggregated run needs before
it starts, and the hand-off between its prefill and decode replicas.

Replica ids run over the pools in config order, then over each pool's replicas, so a config
without `cluster.pools` numbers its replicas as before.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import simpy

from servesim.hwmodels import ParallelPlan
from servesim.hwmodels.catalog import HardwareSpec
from servesim.policies import TransferPolicy
from servesim.policies.views import blocks_for
from servesim.sim.engine.disaggregation import Disaggregation
from servesim.sim.engine.placement import Placement
from servesim.sim.engine.replica import Replica
from servesim.sim.errors import ConfigError
from servesim.sim.experiment.capacity import KvCapacity
from servesim.sim.experiment.config import ExperimentConfig, TopologyConfig
from servesim.sim.experiment.pools import ResolvedPool, is_disaggregated
from servesim.sim.experiment.workload import Workload
from servesim.sim.network import Network, PoolShape, Topology
from servesim.sim.network.config import topology_for
from servesim.sim.reporting.pools_summary import DisaggregationRecords

if TYPE_CHECKING:
    from servesim.sim.runner import PreparedRun


def has_network(config: ExperimentConfig) -> bool:
    """Whether the run has a network: a disaggregated one, or one whose `cluster.topology` sets a key.
    Others keep the hardware entry's host link for swapping, priced into the iteration, so their
    results stay as they were."""
    return is_disaggregated(config) or config.cluster.topology != TopologyConfig()


def build_topology(config: ExperimentConfig, pools: Sequence[tuple[ResolvedPool, HardwareSpec, ParallelPlan]]
                   ) -> Topology:
    """The devices of every pool placed on nodes, with the links between them (`cluster.topology`)."""
    shapes = [PoolShape(pool.name, hardware, pool.replicas, plan.tp * plan.pp) for pool, hardware, plan in pools]
    return topology_for(shapes, config.cluster.topology)


def check_decode_pools(pools: Sequence[tuple[ResolvedPool, KvCapacity]], workload: Workload,
                       max_model_len: int) -> int:
    """Refuse a decode pool that could never take the longest prompt (its KV plus the first token's);
    returns the most tokens a request may have so that every decode replica can hold all of its KV."""
    longest = 0
    for chunk in workload.chunks():
        served = chunk["prompt_tokens"] + chunk["output_tokens"] <= max_model_len
        if served.any():
            longest = max(longest, int(chunk["prompt_tokens"][served].max()))
    limit = max_model_len
    for pool, capacity in pools:
        if pool.role != "decode":
            continue
        needed = blocks_for(longest + 1, capacity.block_size)
        if needed > capacity.num_blocks:
            raise ConfigError(
                f"{pool.key}: a decode replica has {capacity.num_blocks:,} KV blocks of {capacity.block_size} tokens, "
                f"but the longest prompt of the workload ({longest:,} tokens) needs {needed:,} to land with its first "
                f"token, so it could never be admitted; give the pool more memory per replica (its `parallel.tp`, "
                f"`hardware`, or `memory.gpu_memory_utilization`) or shorten the prompts"
            )
        limit = min(limit, capacity.num_blocks * capacity.block_size + 1)
    return limit


def check_model_lens(pools: Sequence[tuple[ResolvedPool, int]], workload: Workload) -> None:
    """Refuse a decode pool whose `max_model_len` is below a prefill pool's when the workload has
    requests between the two: the prefill pool would take them, and no decode replica ever could.
    `pools` pairs each pool with its max_model_len (prompt + output)."""
    prefill = [(pool, length) for pool, length in pools if pool.role == "prefill"]
    for pool, length in pools:
        if pool.role != "decode":
            continue
        for source, source_length in prefill:
            if length >= source_length:
                continue
            count, longest = 0, 0
            for chunk in workload.chunks():
                total = chunk["prompt_tokens"] + chunk["output_tokens"]
                between = (total > length) & (total <= source_length)
                count += int(between.sum())
                longest = max(longest, int(total[between].max()) if between.any() else 0)
            if count:
                raise ConfigError(
                    f"{pool.key}.memory.max_model_len: a decode replica takes at most {length:,} tokens (prompt + "
                    f"output) but {source.key} takes {source_length:,}, and {count:,} request(s) of the workload (the "
                    f"longest {longest:,} tokens) lie between: the prefill pool takes them, but no decode replica "
                    "could ever admit them; give both pools the same `memory.max_model_len` (or set it only at the top "
                    "level)"
                )


def pool_placements(prepared: PreparedRun) -> list[Placement]:
    """Each replica's pool, role, hardware, devices and nodes, by replica id."""
    topology = prepared.topology
    placements = []
    for pool in prepared.pools:
        spec = pool.spec
        for index in range(spec.replicas):
            devices: tuple[int, ...] = ()
            nodes: tuple[int, ...] = ()
            if topology is not None:
                devices = tuple(topology.devices(spec.name, index))
                nodes = tuple(sorted({topology.node_of(device).index for device in devices}))
            placements.append(Placement(spec.name, spec.role, spec.hardware, devices, nodes))
    return placements


def disaggregate(env: simpy.Environment, prepared: PreparedRun, network: Network, replicas: Sequence[Replica],
                 policy: TransferPolicy, records: DisaggregationRecords) -> Disaggregation:
    """The hand-off between the prefill and decode replicas, over the run's network; its rows go to `records`."""
    decode = [replica for replica in replicas if replica.placement.role == "decode"]
    disaggregation = Disaggregation(env, policy, network, prepared.model.kv_bytes_per_token, decode,
                                    records.transfers.append, records.decode_queue.append)
    for replica in replicas:
        if replica.placement.role == "prefill":
            disaggregation.attach_prefill(replica)
    return disaggregation
