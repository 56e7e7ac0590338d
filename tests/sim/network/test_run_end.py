"""The run's end is its last real event: a stale network timer that comes due after it does not count."""
from __future__ import annotations

import simpy

from servesim.hwmodels.catalog import load_hardware
from servesim.sim.network import LinkConfig, Network, PoolShape, Topology, run_to_last_event

# A transfer set found by a random search in which a start sped a flow up, so a timer set for the
# old soonest end became stale, and by float rounding it comes due 4.4e-16 s after the last delivery.
TRANSFERS = [
    (0.007772877522952193, [11, 2], [5, 2], 684011268),
    (0.0, [3], [0], 832470570),
    (0.07878007982920476, [5, 11], [6, 11], 604279608),
    (0.8974154468077583, [12], [9], 497212149),
    (0.0, [9], [9], 740618266),
]


def network_with_transfers() -> tuple[simpy.Environment, Network, list[float]]:
    topology = Topology.build([PoolShape("p", load_hardware("h100-sxm"), 16, 1)], devices_per_node=2,
                              intra_node=LinkConfig(gbps=1, latency_us=0),
                              inter_node=LinkConfig(gbps=0.3, latency_us=0))
    env = simpy.Environment()
    network = Network(env, topology)
    ends: list[float] = []

    def transfer(at: float, src: list[int], dst: list[int], nbytes: int):
        yield env.timeout(at)
        record = yield network.send(src, dst, nbytes)
        ends.append(record.end_s)

    for at, src, dst, nbytes in TRANSFERS:
        env.process(transfer(at, src, dst, nbytes))
    return env, network, ends


def test_the_runs_end_is_the_last_delivery_not_a_stale_timer_after_it() -> None:
    env, network, ends = network_with_transfers()
    end = run_to_last_event(env, network)
    assert network.num_stale_timers > 0
    assert env.now > max(ends)  # the stale timer moved the clock on
    assert end == max(ends)


def test_the_run_beats_every_so_many_events_and_ends_as_env_run_does() -> None:
    env, network, ends = network_with_transfers()
    beats: list[float] = []
    run_to_last_event(env, network, lambda: beats.append(env.now), every=3)
    plain, _, plain_ends = network_with_transfers()
    plain.run()
    assert beats and beats == sorted(beats)
    assert ends == plain_ends and env.now == plain.now
