"""Dynamic roles: prefill and decode instances switch roles as the load shifts (xLLM).

Every `interval_s` the role-switching policy is shown the instances' queues and the recent SLO
attainment (`servesim.policies.role_switch`) and may switch one instance. The policy is asked at
the first arrival or completion at or after each interval's end, not on a timer of its own, so
that the control loop never advances the clock past the last request.

A switch drains the instance: it leaves the router's entries (prefill) or the transfer policy's
destinations (decode) at once, then finishes what it holds: a prefill instance prefills its
queue and keeps each request's KV until it has landed on a decode instance; a decode instance
lands and decodes the requests already planned for it. When it holds nothing, it pays the fixed
`switch_s` (weights stay, so no reload) and serves its new role; a switch whose `switch_s` ends
between two events completes at the next arrival or completion. Each switch is a row of
`role_switches.parquet`; the instances per pool and role over time are `role_counts.parquet`.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

import simpy

from servesim.policies.contract import contract_violation, policy_raised
from servesim.policies.role_switch import (
    DECODE,
    PREFILL,
    SWITCHABLE_ROLES,
    ClusterLoad,
    InstanceLoad,
    RoleSwitch,
    RoleSwitchPolicy,
)
from servesim.sim.engine.cluster import Cluster
from servesim.sim.engine.disaggregation import Disaggregation
from servesim.sim.engine.replica import Replica
from servesim.sim.engine.request import Request, RequestState
from servesim.sim.errors import EngineInvariantError

SWITCH_COLUMNS = ("replica", "pool", "from_role", "to_role", "decided_s", "drained_s", "switched_s", "drain_s")
COUNT_COLUMNS = ("time_s", "pool", "role", "num_replicas")


@dataclass(frozen=True)
class SloObjectives:
    """The objectives the recent attainment is measured against (None: not measured)."""

    ttft_s: float | None
    tpot_s: float | None
    attainment_target: float
    window_s: float


@dataclass(slots=True)
class Switch:
    """One instance on its way from one role to the other."""

    replica: Replica
    to_role: str
    decided_s: float
    drained_s: float = math.nan
    ready_s: float = math.nan


class RoleSwitcher:
    """Asks the policy every interval, drains and switches the instances it names (see the module notes)."""

    def __init__(self, env: simpy.Environment, policy: RoleSwitchPolicy, cluster: Cluster,
                 disaggregation: Disaggregation, objectives: SloObjectives, interval_s: float, switch_s: float
                 ) -> None:
        self.env = env
        self.policy = policy
        self.cluster = cluster
        self.disaggregation = disaggregation
        self.objectives = objectives
        self.interval_s = interval_s
        self.switch_s = switch_s
        self.instances = [r for r in cluster.replicas if r.placement.role in SWITCHABLE_ROLES]
        self._switching: dict[int, Switch] = {}
        self._recent: deque[tuple[float, bool, bool]] = deque()
        """(end time, met TTFT, met TPOT) of the requests that finished in the window."""
        self._next_decision_s = interval_s
        self.switches: list[tuple] = []
        """One row of SWITCH_COLUMNS per completed switch."""
        self.counts: list[tuple] = []
        """Rows of COUNT_COLUMNS: a pool's instances of a role from `time_s` on."""
        for pool, role in sorted({(r.placement.pool, r.placement.role) for r in self.instances}):
            self._count(pool, role)
        cluster.on_change = self._observe

    def request_done(self, request: Request) -> None:
        """Note whether a finished request met its objectives (for the recent attainment)."""
        if request.state is not RequestState.FINISHED:
            return
        ttft_s, tpot_s = self.objectives.ttft_s, self.objectives.tpot_s
        ttft = request.first_token_s - request.arrival_s
        tpot = (request.finish_s - request.first_token_s) / max(request.output_tokens - 1, 1)
        self._recent.append((self.env.now, ttft_s is None or ttft <= ttft_s, tpot_s is None or tpot <= tpot_s))

    def _observe(self) -> None:
        now = self.env.now
        for switch in [s for s in self._switching.values() if s.ready_s <= now]:
            self._complete(switch)
        if now >= self._next_decision_s:
            self._next_decision_s = now + self.interval_s
            self._decide()

    def _decide(self) -> None:
        now, policy = self.env.now, self.policy
        load = self.load()
        try:
            decision = policy.decide(load)
        except Exception as exc:
            raise policy_raised(policy, "role_switch.decide", now, exc) from exc
        if decision is None:
            return
        checked = self._check(decision, load)
        replica = next(r for r in self.instances if r.replica_id == checked.replica)
        switch = Switch(replica, checked.to_role, now)
        self._switching[replica.replica_id] = switch
        if replica.placement.role == PREFILL:
            self.cluster.set_entry(replica, False)
        else:
            self.disaggregation.withdraw_decode(replica)
        replica.on_empty = lambda: self._drained_if_empty(switch)
        self._drained_if_empty(switch)

    def _check(self, decision: object, load: ClusterLoad) -> RoleSwitch:
        """A decision must name an instance serving a role now and the other role, never its last instance."""
        now = self.env.now
        ids = {i.replica: i for i in load.instances}
        chosen = ids.get(decision.replica) if isinstance(decision, RoleSwitch) else None
        if (chosen is None or chosen.switching or not isinstance(decision, RoleSwitch)
                or decision.to_role not in SWITCHABLE_ROLES or decision.to_role == chosen.role):
            raise contract_violation(self.policy, "role_switch.decide", now, f"returned {decision!r}; it must be None "
                                     "or a RoleSwitch naming a prefill or decode instance that is not switching and "
                                     "the other role")
        if len(load.active(chosen.role)) < 2:
            raise contract_violation(self.policy, "role_switch.decide", now, f"switched replica {chosen.replica}, the "
                                     f"last {chosen.role} instance; at least one instance of each role must remain")
        return decision

    def _drained_if_empty(self, switch: Switch) -> None:
        replica = switch.replica
        if not math.isnan(switch.drained_s) or replica.num_outstanding or replica.suspended:
            return
        if replica.placement.role == PREFILL and self.disaggregation.holds_kv_of(replica):
            return
        if replica.placement.role == DECODE and self.disaggregation.num_waiting_for_blocks(replica):
            return
        replica.on_empty = None
        switch.drained_s = self.env.now
        switch.ready_s = self.env.now + self.switch_s
        if self.switch_s == 0:
            self._complete(switch)

    def _complete(self, switch: Switch) -> None:
        replica, now = switch.replica, self.env.now
        old_role = replica.placement.role
        replica.kv.check_conservation()
        if replica.kv.num_used_blocks:
            raise EngineInvariantError(f"replica {replica.replica_id} switches from {old_role} to {switch.to_role} "
                                       f"at t={now:.6f} s still holding {replica.kv.num_used_blocks} KV blocks")
        del self._switching[replica.replica_id]
        if old_role == PREFILL:
            self.disaggregation.detach_prefill(replica)
        else:
            self.disaggregation.detach_decode(replica)
        replica.placement = replace(replica.placement, role=switch.to_role)
        if switch.to_role == PREFILL:
            self.disaggregation.attach_prefill(replica)
            self.cluster.set_entry(replica, True)
        else:
            self.disaggregation.attach_decode(replica)
        pool = replica.placement.pool
        self.switches.append((replica.replica_id, pool, old_role, switch.to_role, switch.decided_s,
                              switch.drained_s, now, switch.drained_s - switch.decided_s))
        self._count(pool, old_role)
        self._count(pool, switch.to_role)

    def _count(self, pool: str, role: str) -> None:
        number = sum(1 for r in self.instances if r.placement.pool == pool and r.placement.role == role)
        self.counts.append((self.env.now, pool, role, number))

    def load(self) -> ClusterLoad:
        """What the policy sees now."""
        now = self.env.now
        recent = self._recent
        while recent and recent[0][0] < now - self.objectives.window_s:
            recent.popleft()
        objectives = self.objectives
        ttft = _share([met for _, met, _ in recent]) if objectives.ttft_s is not None else None
        tpot = _share([met for _, _, met in recent]) if objectives.tpot_s is not None else None
        return ClusterLoad(now, tuple(self._instance(r) for r in self.instances), ttft, tpot,
                           objectives.attainment_target)

    def _instance(self, replica: Replica) -> InstanceLoad:
        requests: Sequence[Request] = [*replica.waiting, *replica.running]
        queued = sum(max(r.prompt_tokens - r.num_computed_tokens, 0) for r in requests)
        decoding = sum(1 for r in requests if r.num_generated)
        kv = replica.kv
        return InstanceLoad(replica.replica_id, replica.placement.pool, replica.placement.role,
                            replica.replica_id in self._switching, queued, decoding,
                            self.disaggregation.num_waiting_for_blocks(replica), kv.num_used_blocks / kv.num_blocks)

    @property
    def num_switching(self) -> int:
        return len(self._switching)


def _share(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None

