"""Setting up dynamic roles for a run (`cluster.role_switching`): the checks and the control loop."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import simpy

from servesim.policies.role_switch import DECODE, PREFILL, QueuePressureRoleSwitchPolicy
from servesim.sim.engine.cluster import Cluster
from servesim.sim.engine.disaggregation import Disaggregation
from servesim.sim.engine.role_switching import RoleSwitcher, SloObjectives
from servesim.sim.errors import ConfigError
from servesim.sim.experiment.capacity import KvCapacity
from servesim.sim.experiment.config import ExperimentConfig, RoleSwitchingConfig
from servesim.sim.experiment.pools import ResolvedPool
from servesim.sim.experiment.workload import Workload
from servesim.sim.pool_setup import check_decode_pools


def check_switchable_pools(pools: Sequence[tuple[ResolvedPool, KvCapacity]], workload: Workload,
                           max_model_len: int) -> int:
    """`check_decode_pools` for a cluster with dynamic roles, where a prefill pool's instances may
    decode too: each of them must also be able to take the longest prompt's KV."""
    switchable = [(replace(pool, role=DECODE) if pool.role == PREFILL else pool, capacity) for pool, capacity in pools]
    try:
        return check_decode_pools(switchable, workload, max_model_len)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (with cluster.role_switching a prefill instance may become a decode one, so every "
                          "prefill and decode pool must be able to decode)") from None


def role_switcher(env: simpy.Environment, config: ExperimentConfig, cluster: Cluster,
                  disaggregation: Disaggregation) -> RoleSwitcher:
    """The control loop that switches instances between the prefill and decode pools."""
    settings: RoleSwitchingConfig | None = config.cluster.role_switching
    assert settings is not None  # the runner builds one only when the key is set
    policy = QueuePressureRoleSwitchPolicy(  # the one `policy` there is: queue_pressure
        prefill_tokens_high=settings.prefill_tokens_high,
        decode_seqs_high=settings.decode_seqs_high, kv_high=settings.kv_high, cooldown_s=settings.cooldown_s)
    slo = config.slo
    objectives = SloObjectives(slo.ttft_s, slo.tpot_s, slo.attainment_target, settings.window_s)
    return RoleSwitcher(env, policy, cluster, disaggregation, objectives, settings.interval_s, settings.switch_s)
