"""The queue_pressure role-switching policy on hand-made cluster loads (no SimPy)."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from servesim.policies.role_switch import (
    DECODE,
    PREFILL,
    ClusterLoad,
    InstanceLoad,
    QueuePressureRoleSwitchPolicy,
    RoleSwitch,
)


def _instance(replica: int, role: str, queued: int = 0, decoding: int = 0, waiting: int = 0, kv: float = 0.1,
              switching: bool = False) -> InstanceLoad:
    return InstanceLoad(replica, role, role, switching, queued, decoding, waiting, kv)


def _load(*instances: InstanceLoad, now: float = 100.0, tpot: float | None = None) -> ClusterLoad:
    return ClusterLoad(now, instances, None, tpot, 0.9)


def _policy(**params: float) -> QueuePressureRoleSwitchPolicy:
    return QueuePressureRoleSwitchPolicy(**{"prefill_tokens_high": 1000, "decode_seqs_high": 10, **params})


def test_a_piled_up_prefill_queue_takes_the_least_busy_decode_instance() -> None:
    load = _load(_instance(0, PREFILL, queued=5000), _instance(1, PREFILL, queued=4000),
                 _instance(2, DECODE, decoding=4), _instance(3, DECODE, decoding=2))
    assert _policy().decide(load) == RoleSwitch(3, PREFILL)


def test_a_crowded_decode_side_takes_the_prefill_instance_with_the_shortest_queue() -> None:
    load = _load(_instance(0, PREFILL, queued=300), _instance(1, PREFILL, queued=100),
                 _instance(2, DECODE, decoding=15), _instance(3, DECODE, decoding=12))
    assert _policy().decide(load) == RoleSwitch(1, DECODE)


def test_missed_tpot_or_full_kv_put_the_decode_side_under_pressure() -> None:
    quiet = (_instance(0, PREFILL), _instance(1, PREFILL), _instance(2, DECODE, decoding=3))
    assert _policy().decide(_load(*quiet)) is None
    assert _policy().decide(_load(*quiet, tpot=0.5)) == RoleSwitch(0, DECODE)
    full = (*quiet[:2], _instance(2, DECODE, decoding=3, kv=0.95))
    assert _policy().decide(_load(*full)) == RoleSwitch(0, DECODE)


def test_no_switch_when_the_side_giving_up_an_instance_would_then_be_under_pressure() -> None:
    # 15 decoding on two instances is under 10 each, but one instance alone would hold 15
    load = _load(_instance(0, PREFILL, queued=5000), _instance(1, DECODE, decoding=8), _instance(2, DECODE, decoding=7))
    assert _policy().decide(load) is None
    # a decode side missing its TPOT target keeps its instances
    load = _load(_instance(0, PREFILL, queued=5000), _instance(1, DECODE), _instance(2, DECODE), tpot=0.5)
    assert _policy().decide(load) is None


def test_both_sides_under_pressure_or_both_idle_switch_nothing() -> None:
    hot = _load(_instance(0, PREFILL, queued=5000), _instance(1, PREFILL, queued=5000),
                _instance(2, DECODE, decoding=30), _instance(3, DECODE, decoding=30))
    idle = _load(_instance(0, PREFILL), _instance(1, PREFILL), _instance(2, DECODE), _instance(3, DECODE))
    assert _policy().decide(hot) is None and _policy().decide(idle) is None


def test_one_switch_at_a_time_and_a_cooldown_between_switches() -> None:
    policy = _policy(cooldown_s=5.0)
    instances = (_instance(0, PREFILL, queued=5000), _instance(1, DECODE), _instance(2, DECODE))
    assert policy.decide(_load(*instances, now=10.0)) == RoleSwitch(1, PREFILL)
    assert policy.decide(_load(*instances, now=14.0)) is None
    assert policy.decide(_load(*instances, now=15.0)) == RoleSwitch(1, PREFILL)
    draining = (instances[0], _instance(1, DECODE, switching=True), _instance(2, DECODE), _instance(3, DECODE))
    assert _policy().decide(_load(*draining)) is None


@given(st.lists(st.tuples(st.sampled_from([PREFILL, DECODE]), st.integers(0, 5000), st.integers(0, 40),
                          st.floats(0, 1), st.booleans()), min_size=2, max_size=8),
       st.one_of(st.none(), st.floats(0, 1)))
def test_never_switches_the_last_active_instance_of_a_role(rows: list[tuple[str, int, int, float, bool]],
                                                          tpot: float | None) -> None:
    instances = tuple(_instance(index, role, queued=queued, decoding=decoding, kv=kv, switching=switching)
                      for index, (role, queued, decoding, kv, switching) in enumerate(rows))
    load = _load(*instances, tpot=tpot)
    choice = _policy(cooldown_s=0.0).decide(load)
    if choice is None:
        return
    chosen = next(i for i in instances if i.replica == choice.replica)
    assert not chosen.switching and chosen.role != choice.to_role
    assert len(load.active(chosen.role)) >= 2
