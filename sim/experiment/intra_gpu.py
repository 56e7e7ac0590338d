"""`engine.intra_gpu_split`: checked before the run, turned into each replica's shared device.

The split policy's parameters are validated with the rest of the config, and combinations the
two-loop replica cannot serve are refused here: data-parallel lockstep (one step for all ranks
leaves no room for two loops) and schedulers that interrupt iterations (the shared device
runs every iteration to its end).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import simpy

from servesim.hwmodels import BatchShape, CostModel, HardwareSpec, ModelSpec, ParallelPlan
from servesim.hwmodels.sm_share import SmShareModel
from servesim.policies import PolicyError, SchedulerPolicy, create_policy, get_policy, validate_params
from servesim.sim.engine.intra_gpu import IntraGpuReplica
from servesim.sim.engine.overheads import EngineOverheadCostModel
from servesim.sim.engine.shared_device import SharedDevice, SplitStats
from servesim.sim.errors import ConfigError
from servesim.sim.experiment.config import ExperimentConfig, IntraGpuSplitSpec
from servesim.sim.experiment.pools import is_disaggregated

KEY = "engine.intra_gpu_split"


def check_intra_gpu(config: ExperimentConfig) -> None:
    """Refuse a split the engine cannot run, naming the key and the fix; nothing when there is none."""
    spec = config.engine.intra_gpu_split
    if spec is None:
        return
    try:
        validate_params("split", spec.name, spec.params())
        scheduler = get_policy("scheduler", config.scheduler.name).cls
    except PolicyError as exc:
        raise ConfigError(f"{KEY}: {exc}") from None
    if is_disaggregated(config):
        raise ConfigError(f"{KEY}: the pools hand prefilled requests to decode pools, and the two-loop replica "
                          "serves both phases on one device itself; use unified pools with the split, or remove it")
    if config.cluster.parallel.ep_across_replicas:
        raise ConfigError(f"{KEY}: cluster.parallel.ep_across_replicas steps every replica in lockstep, which leaves "
                          "no room for separate prefill and decode loops; remove one of the two")
    if getattr(scheduler, "interrupt", None) is not SchedulerPolicy.interrupt:
        raise ConfigError(f"{KEY}: scheduler {config.scheduler.name!r} interrupts iterations at operator "
                          "boundaries, which the shared device does not model; use a scheduler that decides at "
                          "iteration boundaries (e.g. vllm) or remove the split")


def host_seconds(cost_model: CostModel) -> Callable[[BatchShape], float]:
    """The part of `cost_model`'s iteration time spent on the host (the engine's CPU time)."""
    if isinstance(cost_model, EngineOverheadCostModel):
        inner = cost_model.inner
        return lambda batch: cost_model.iteration_time(batch) - inner.iteration_time(cost_model.graph_padded(batch))
    return lambda batch: 0.0


def share_model(spec: IntraGpuSplitSpec, cost_model: CostModel, model: ModelSpec, hardware: HardwareSpec,
                plan: ParallelPlan) -> SmShareModel:
    return SmShareModel.for_model(cost_model, model, hardware, plan, spec.bandwidth_saturation_share,
                                  host_seconds(cost_model))


def device_factory(env: simpy.Environment, spec: IntraGpuSplitSpec, model: SmShareModel,
                   rng: np.random.Generator) -> Callable[[Callable[[], int]], SharedDevice]:
    """What an `IntraGpuReplica` calls to make its device, with a split policy of its own."""
    policy = create_policy("split", spec.name, spec.params(), rng=rng)
    return lambda queued_prefill_tokens: SharedDevice(env, model, policy, queued_prefill_tokens)


def intra_gpu_summary(spec: IntraGpuSplitSpec, replicas: list[Any]) -> dict[str, Any]:
    """The summary's `intra_gpu` block: the split's statistics over every replica's device."""
    total = SplitStats()
    prefill_iterations = decode_iterations = 0
    for replica in replicas:
        if not isinstance(replica, IntraGpuReplica):
            continue
        stats = replica.device.stats
        total.busy_s += stats.busy_s
        total.share_s += stats.share_s
        total.both_busy_s += stats.both_busy_s
        total.contention_s += stats.contention_s
        total.num_repartitions += stats.num_repartitions
        total.max_contention = max(total.max_contention, stats.max_contention)
        prefill_iterations += replica.prefill.num_iterations
        decode_iterations += replica.decode.num_iterations
    return {
        "policy": spec.name,
        "params": spec.params(),
        "bandwidth_saturation_share": spec.bandwidth_saturation_share,
        **total.as_dict(),
        "prefill_iterations": prefill_iterations,
        "decode_iterations": decode_iterations,
    }
