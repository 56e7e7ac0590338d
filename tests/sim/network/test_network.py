"""The SimPy network against closed forms, and its invariants over random transfer sets."""
from __future__ import annotations

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.hwmodels.catalog import load_hardware
from servesim.sim.network import LinkConfig, Network, PoolShape, Topology, TransferRecord
from tests.sim.network.link_checks import assert_loads_add_up

GB = 10**9
INTRA_LATENCY_S = 1e-3
INTER_LATENCY_S = 2e-3


def make_network(devices: int = 16, per_node: int = 8) -> tuple[simpy.Environment, Network]:
    """Nodes of `per_node` devices; 1 GB/s fabric ports, 0.5 GB/s NICs: round numbers."""
    topology = Topology.build([PoolShape("p", load_hardware("h100-sxm"), devices, 1)], devices_per_node=per_node,
                              intra_node=LinkConfig(gbps=1, latency_us=1000),
                              inter_node=LinkConfig(gbps=0.5, latency_us=2000))
    env = simpy.Environment()
    return env, Network(env, topology)


def send_at(env: simpy.Environment, network: Network, at: float, src, dst, nbytes: int, out: dict, key) -> None:
    def process():
        yield env.timeout(at)
        out[key] = yield network.send(src, dst, nbytes)
    env.process(process())


def test_one_flow_takes_latency_plus_bytes_over_bandwidth() -> None:
    env, network = make_network()
    inside = network.send([0], [1], GB)
    across = network.send([2], [9], GB)
    env.run()
    assert inside.value == TransferRecord(0.0, pytest.approx(INTRA_LATENCY_S + 1.0), GB)
    assert across.value.end_s == pytest.approx(INTER_LATENCY_S + 2.0)
    assert network.ideal_time_s([0], [1], GB) == pytest.approx(INTRA_LATENCY_S + 1.0)


def test_two_equal_flows_on_one_port_each_take_twice_as_long() -> None:
    env, network = make_network()
    first, second = network.send([0], [1], GB), network.send([0], [2], GB)
    env.run()
    assert first.value.end_s == pytest.approx(INTRA_LATENCY_S + 2.0)
    assert second.value.end_s == pytest.approx(INTRA_LATENCY_S + 2.0)


def test_a_flow_that_starts_halfway_shares_then_speeds_up() -> None:
    # A alone for 0.5 s (half done), then both at 0.5 GB/s: A's last half takes 1 s (ends 1.5);
    # B has sent 0.5 GB by then and sends the rest alone at 1 GB/s (ends 2.0).
    env, network = make_network()
    done: dict = {}
    send_at(env, network, 0.0, [0], [1], GB, done, "a")
    send_at(env, network, 0.5, [0], [2], GB, done, "b")
    env.run()
    assert done["a"].end_s == pytest.approx(1.5 + INTRA_LATENCY_S)
    assert done["b"].end_s == pytest.approx(2.0 + INTRA_LATENCY_S)
    port = [(row.time_s, row.utilisation, row.flows) for row in network.utilisation_rows()
            if row.link == "node0/dev0/fabric" and row.direction == "out"]
    assert port == [(0.0, 1.0, 1), (0.5, 1.0, 2), (pytest.approx(1.5), 1.0, 1), (pytest.approx(2.0), 0.0, 0)]


def test_a_transfer_within_one_device_is_immediate() -> None:
    env, network = make_network()
    event = network.send([3], [3], GB)
    assert event.triggered
    env.run()
    assert event.value == TransferRecord(0.0, 0.0, GB)
    assert network.totals() == {"bytes_sent": GB, "bytes_received": GB, "num_transfers": 1}
    assert network.utilisation_rows() == []


def test_bytes_split_evenly_over_the_smaller_group() -> None:
    env, network = make_network()
    parallel = network.send([0, 1], [2, 3], 2 * GB)  # two flows of 1 GB on separate ports
    funnel = network.send([4, 5], [6], 2 * GB)  # one flow: 4 -> 6 carries everything
    env.run()
    assert parallel.value.end_s == pytest.approx(1.0 + INTRA_LATENCY_S)
    assert funnel.value.end_s == pytest.approx(2.0 + INTRA_LATENCY_S)
    bytes_by_link = {(s.name, s.direction): s.bytes for s in network.link_stats()}
    assert bytes_by_link[("node0/dev4/fabric", "out")] == 2 * GB
    assert ("node0/dev5/fabric", "out") not in bytes_by_link


def test_bad_transfers_are_refused() -> None:
    _, network = make_network()
    with pytest.raises(ValueError, match="at least one source"):
        network.send([], [1], 10)
    with pytest.raises(ValueError, match="whole, non-negative"):
        network.send([0], [1], 1.5)


transfer_sets = st.lists(st.tuples(
    st.floats(0.0, 3.0),  # start time
    st.lists(st.integers(0, 7), min_size=1, max_size=3, unique=True),  # sources
    st.lists(st.integers(0, 7), min_size=1, max_size=3, unique=True),  # destinations
    st.integers(0, 3 * GB),
), min_size=1, max_size=10)


@settings(max_examples=60)
@given(transfer_sets)
def test_bytes_are_conserved_and_no_link_exceeds_its_capacity(transfers) -> None:
    env, network = make_network(devices=8, per_node=4)
    done: dict = {}
    for index, (at, src, dst, nbytes) in enumerate(transfers):
        send_at(env, network, at, src, dst, nbytes, done, index)
    env.run()
    totals = network.totals()
    assert totals["bytes_sent"] == totals["bytes_received"] == sum(t[3] for t in transfers)
    assert totals["num_transfers"] == len(transfers)
    rows = network.utilisation_rows()
    assert [row.time_s for row in rows] == sorted(row.time_s for row in rows)
    assert_loads_add_up(network)
    assert len(done) == len(transfers)
    for index, (at, src, dst, _) in enumerate(transfers):
        record = done[index]
        assert record.end_s >= at + network.ideal_time_s(src, dst, record.nbytes) - 1e-9


def test_the_same_transfers_give_identical_records_and_series() -> None:
    def run() -> tuple[dict, list]:
        env, network = make_network()
        done: dict = {}
        for index, at in enumerate((0.0, 0.1, 0.1, 0.25, 0.7)):
            send_at(env, network, at, [index % 3, 8], [9 + index % 2, 4], GB + index, done, index)
        env.run()
        return done, network.utilisation_rows()
    assert run() == run()
