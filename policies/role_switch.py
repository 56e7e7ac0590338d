"""Role-switching policies: when a prefill instance should turn decode, or a decode one prefill.

After xLLM (JD.com, 2025: dynamic PD disaggregation), an instance's role follows the load: when
prompts pile up on the prefill side while the decode side keeps up, a decode instance drains and
turns prefill, and the other way round. A policy sees a `ClusterLoad` (each instance's queues
and the recent SLO attainment) and returns at most one `RoleSwitch`; the engine drains the
instance and pays the switch (`servesim.sim.engine.role_switching`). Plain data in, plain data
out: a policy is tested with hand-made loads, without SimPy.
"""
from __future__ import annotations

from dataclasses import dataclass

PREFILL = "prefill"
DECODE = "decode"
SWITCHABLE_ROLES = (PREFILL, DECODE)


@dataclass(frozen=True)
class InstanceLoad:
    """One prefill or decode instance as a role-switching policy sees it."""

    replica: int
    pool: str
    role: str
    switching: bool
    """Draining or paying its switch: it takes no new work of either role."""
    queued_prefill_tokens: int
    """Prompt tokens routed here and not yet prefilled (waiting or in progress)."""
    num_decoding: int
    """Requests here that have their first token and are still generating."""
    num_waiting_for_blocks: int
    """Prefilled requests queued for this decode instance's KV blocks (the back-pressure)."""
    kv_used_share: float


@dataclass(frozen=True)
class ClusterLoad:
    """The instances that may switch, and the SLO attainment of the requests that ended lately."""

    now: float
    instances: tuple[InstanceLoad, ...]
    ttft_attainment: float | None
    """Share of the window's finished requests that met the TTFT objective (None: no objective or none)."""
    tpot_attainment: float | None
    attainment_target: float

    def active(self, role: str) -> list[InstanceLoad]:
        """The instances serving `role` now (not switching)."""
        return [i for i in self.instances if i.role == role and not i.switching]

    @property
    def any_switching(self) -> bool:
        return any(i.switching for i in self.instances)


@dataclass(frozen=True)
class RoleSwitch:
    """Switch `replica` to `to_role` (it drains first)."""

    replica: int
    to_role: str


class RoleSwitchPolicy:
    """Decides, every `interval_s`, whether one instance should change role."""

    def decide(self, load: ClusterLoad) -> RoleSwitch | None:
        raise NotImplementedError


@dataclass
class QueuePressureRoleSwitchPolicy(RoleSwitchPolicy):
    """Move an instance towards the side under pressure while the other side has slack.

    The prefill side is under pressure when its queued prompt tokens per active instance exceed
    `prefill_tokens_high`; the decode side when its decoding requests per active instance exceed
    `decode_seqs_high` (TPOT grows with the batch), an instance's KV use exceeds `kv_high`, or
    TPOT attainment is below target. An instance moves only if the side it leaves stays under its
    threshold without it (hysteresis), never away from a decode side missing its TPOT target, one
    switch at a time, at least `cooldown_s` apart, and never the last active instance of a role.
    TTFT attainment is not used: it is known only once requests end, long after the prefill
    queue that caused it (the queue is the early signal).
    """

    prefill_tokens_high: int = 16384
    decode_seqs_high: int = 128
    kv_high: float = 0.9
    cooldown_s: float = 5.0
    _last_switch_s: float = float("-inf")

    def decide(self, load: ClusterLoad) -> RoleSwitch | None:
        if load.any_switching or load.now - self._last_switch_s < self.cooldown_s:
            return None
        prefill, decode = load.active(PREFILL), load.active(DECODE)
        queued = sum(i.queued_prefill_tokens for i in prefill)
        decoding = sum(i.num_decoding + i.num_waiting_for_blocks for i in decode)
        tpot_missed = _below(load.tpot_attainment, load.attainment_target)
        prefill_hot = queued > self.prefill_tokens_high * len(prefill)
        decode_hot = (decoding > self.decode_seqs_high * len(decode) or tpot_missed
                      or any(i.kv_used_share > self.kv_high for i in decode))
        choice = None
        if prefill_hot and not decode_hot and len(decode) > 1 and decoding <= self.decode_seqs_high * (len(decode) - 1):
            donor = min(decode, key=lambda i: (i.num_decoding + i.num_waiting_for_blocks, i.replica))
            choice = RoleSwitch(donor.replica, PREFILL)
        elif (decode_hot and not prefill_hot and len(prefill) > 1
              and queued <= self.prefill_tokens_high * (len(prefill) - 1)):
            donor = min(prefill, key=lambda i: (i.queued_prefill_tokens, i.replica))
            choice = RoleSwitch(donor.replica, DECODE)
        if choice is not None:
            self._last_switch_s = load.now
        return choice


def _below(attainment: float | None, target: float) -> bool:
    return attainment is not None and attainment < target

