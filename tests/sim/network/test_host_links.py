"""Each device's host (PCIe) port: its figures, copies over it against closed forms, and the
network's invariants with host copies among the transfers."""
from __future__ import annotations

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.hwmodels.catalog import load_hardware
from servesim.sim.network import LinkConfig, Network, PoolShape, Topology
from servesim.sim.network.topology import HOST_LINK_LATENCY_US, Direction, LinkId, LinkKind
from tests.sim.network.link_checks import assert_loads_add_up
from tests.sim.network.test_network import GB, make_network

H100 = load_hardware("h100-sxm")
HOST_LATENCY_S = 1e-3


def host_network(devices: int = 8, per_node: int = 4) -> tuple[simpy.Environment, Network]:
    """1 GB/s fabric ports, 0.5 GB/s NICs and 0.25 GB/s host ports (1 ms per copy): round numbers."""
    topology = Topology.build([PoolShape("p", H100, devices, 1)], devices_per_node=per_node,
                              intra_node=LinkConfig(gbps=1, latency_us=1000),
                              inter_node=LinkConfig(gbps=0.5, latency_us=2000),
                              host=LinkConfig(gbps=0.25, latency_us=1000))
    env = simpy.Environment()
    return env, Network(env, topology)


def copy_at(env: simpy.Environment, network: Network, at: float, kind: str, src, dst, nbytes: int, out: dict,
            key) -> None:
    def process():
        yield env.timeout(at)
        if kind == "to_host":
            out[key] = yield network.to_host(src, nbytes)
        elif kind == "from_host":
            out[key] = yield network.from_host(dst, nbytes)
        else:
            out[key] = yield network.send(src, dst, nbytes)
    env.process(process())


def test_the_host_port_comes_from_the_entry_unless_overridden() -> None:
    topology = Topology.build([PoolShape("p", H100, 9, 1)])
    out_port = LinkId(8, LinkKind.HOST, Direction.OUT)
    assert topology.host_path(8, Direction.OUT) == (out_port,)
    assert topology.capacity(out_port) == H100.host_link_gbps * 1e9
    assert topology.host_latency_s(8) == pytest.approx(HOST_LINK_LATENCY_US * 1e-6)
    assert topology.link_name(out_port) == "node1/dev8/host"
    custom = Topology.build([PoolShape("p", H100, 9, 1)], host=LinkConfig(gbps=16, latency_us=0))
    assert custom.capacity(LinkId(0, LinkKind.HOST, Direction.IN)) == 16e9
    assert custom.host_latency_s(0) == 0.0
    with pytest.raises(KeyError, match="device 99"):
        custom.host_path(99, Direction.IN)


def test_a_copy_takes_latency_plus_bytes_over_the_host_bandwidth_split_over_the_devices() -> None:
    env, network = host_network()
    alone = network.to_host([0], GB // 4)
    tensor_parallel = network.from_host([1, 2], GB // 2)  # each device its half over its own port
    env.run()
    assert alone.value.end_s == pytest.approx(1.0 + HOST_LATENCY_S)
    assert tensor_parallel.value.end_s == pytest.approx(1.0 + HOST_LATENCY_S)
    bytes_by_link = {(s.name, s.direction): s.bytes for s in network.link_stats()}
    assert bytes_by_link == {("node0/dev0/host", "out"): GB // 4, ("node0/dev1/host", "in"): GB // 4,
                             ("node0/dev2/host", "in"): GB // 4}
    assert network.counts.sent == {"swap": 3 * GB // 4}


def test_two_copies_on_one_port_share_it_fairly() -> None:
    # A alone for 1 s sends 0.25 GB (half), then A and B at 0.125 GB/s each: A's last 0.25 GB takes
    # 2 s (ends at 3); B has sent 0.25 GB by then and sends its rest alone at 0.25 GB/s (ends at 4).
    env, network = host_network()
    done: dict = {}
    copy_at(env, network, 0.0, "to_host", [3], None, GB // 2, done, "a")
    copy_at(env, network, 1.0, "to_host", [3], None, GB // 2, done, "b")
    env.run()
    assert done["a"].end_s == pytest.approx(3.0 + HOST_LATENCY_S)
    assert done["b"].end_s == pytest.approx(4.0 + HOST_LATENCY_S)
    port = [(row.time_s, row.utilisation, row.flows) for row in network.utilisation_rows()]
    assert port == [(0.0, 1.0, 1), (1.0, 1.0, 2), (pytest.approx(3.0), 1.0, 1), (pytest.approx(4.0), 0.0, 0)]


def test_copies_that_share_no_port_are_independent() -> None:
    env, network = host_network()
    out, into, other = network.to_host([0], GB // 4), network.from_host([0], GB // 4), network.to_host([5], GB // 4)
    kv = network.send([0], [1], GB)  # the fabric port is another link
    env.run()
    assert [event.value.end_s for event in (out, into, other)] == [pytest.approx(1.0 + HOST_LATENCY_S)] * 3
    assert kv.value.end_s == pytest.approx(1.0 + 1e-3)


def test_bad_copies_are_refused() -> None:
    _, network = host_network()
    with pytest.raises(ValueError, match="at least one device"):
        network.to_host([], 10)
    with pytest.raises(ValueError, match="whole, non-negative"):
        network.from_host([0], -1)


transfer_sets = st.lists(st.tuples(
    st.floats(0.0, 3.0),  # start time
    st.sampled_from(["send", "to_host", "from_host"]),
    st.lists(st.integers(0, 7), min_size=1, max_size=3, unique=True),  # sources
    st.lists(st.integers(0, 7), min_size=1, max_size=3, unique=True),  # destinations
    st.integers(0, GB),
), min_size=1, max_size=10)


@settings(max_examples=60)
@given(transfer_sets)
def test_bytes_are_conserved_and_no_link_exceeds_its_capacity_with_host_copies(transfers) -> None:
    env, network = host_network()
    done: dict = {}
    for index, (at, kind, src, dst, nbytes) in enumerate(transfers):
        copy_at(env, network, at, kind, src, dst, nbytes, done, index)
    env.run()
    totals = network.totals()
    assert totals["bytes_sent"] == totals["bytes_received"] == sum(t[4] for t in transfers)
    assert len(done) == totals["num_transfers"] == len(transfers)
    host_bytes = sum(nbytes for _, kind, _, _, nbytes in transfers if kind != "send")
    carried_by_host_ports = sum(s.bytes for s in network.link_stats() if s.name.endswith("/host"))
    assert network.counts.sent.get("swap", 0) == host_bytes == carried_by_host_ports
    assert_loads_add_up(network)


def test_the_fabric_only_network_of_the_other_tests_has_host_ports_too() -> None:
    env, network = make_network()
    event = network.to_host([9], GB)
    env.run()
    assert event.value.end_s == pytest.approx(GB / (H100.host_link_gbps * 1e9) + HOST_LINK_LATENCY_US * 1e-6)
