"""Setting up dynamic roles for a run (`cluster.role_switching`): the checks and the control loop."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import simpy

from servesim.policies.role_switch import DECODE, PREFILL, QueuePressureRoleSwitchPolicy
from servesim.sim.engine.cluster import Cluster
from servesim.sim.engine.disaggregation import Disaggregation
from servesim.sim.engine.role_switching import RoleSwitcher, SloObjectives
from servesim.sim.experiment.capacity import KvCapacity
from servesim.sim.experiment.config import ExperimentConfig, RoleSwitchingConfig
from servesim.sim.experiment.pools import ResolvedPool


def as_switchable(pools: Sequence[tuple[ResolvedPool, KvCapacity]]) -> list[tuple[ResolvedPool, KvCapacity]]:
    """With dynamic roles a prefill pool's instances may decode: check them as decode pools too."""
    return [(replace(pool, role=DECODE) if pool.role == PREFILL else pool, capacity) for pool, capacity in pools]


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
