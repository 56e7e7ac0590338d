"""The built-in transfer policies on hand-made views: same node first, then the least loaded decode replica."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servesim.policies import TransferDecision, create_policy
from servesim.policies.transfer import decode_choice
from tests.policies.views import FakeKv, FakeReplica, waiting


def _decode(replica_id: int, nodes: tuple[int, ...], outstanding: int = 0, free: int = 1000) -> FakeReplica:
    return FakeReplica(replica_id=replica_id, waiting=[waiting(100 + i) for i in range(outstanding)],
                       kv=FakeKv(num_free_blocks=free), pool="decode", role="decode", nodes=nodes)


SOURCE = FakeReplica(replica_id=0, pool="prefill", role="prefill", nodes=(1,))


def test_a_decode_replica_on_the_prefill_replicas_node_is_chosen_even_when_busier() -> None:
    destinations = [_decode(1, (0,)), _decode(2, (1,), outstanding=5, free=10), _decode(3, (2,))]
    assert decode_choice(SOURCE, destinations) == 1


def test_among_same_node_replicas_the_one_with_fewest_outstanding_requests_wins() -> None:
    destinations = [_decode(1, (1,), outstanding=3), _decode(2, (1,), outstanding=1), _decode(3, (0,))]
    assert decode_choice(SOURCE, destinations) == 1


def test_with_no_replica_on_the_node_the_least_loaded_wins_then_the_most_free_blocks_then_the_first() -> None:
    assert decode_choice(SOURCE, [_decode(1, (0,), 2), _decode(2, (2,), 1), _decode(3, (3,), 4)]) == 1
    assert decode_choice(SOURCE, [_decode(1, (0,), 1, free=5), _decode(2, (2,), 1, free=50)]) == 1
    assert decode_choice(SOURCE, [_decode(1, (0,)), _decode(2, (2,))]) == 0


def test_a_replica_spanning_the_prefill_node_counts_as_same_node() -> None:
    assert decode_choice(SOURCE, [_decode(1, (0,)), _decode(2, (0, 1), outstanding=9)]) == 1


@given(st.lists(st.tuples(st.sampled_from([(0,), (1,), (2,), (1, 2)]), st.integers(0, 5), st.integers(0, 100)),
                min_size=1, max_size=8))
def test_the_choice_is_never_beaten_on_node_then_load(specs: list[tuple[tuple[int, ...], int, int]]) -> None:
    destinations = [_decode(i + 1, nodes, outstanding, free) for i, (nodes, outstanding, free) in enumerate(specs)]
    chosen = destinations[decode_choice(SOURCE, destinations)]
    local = [d for d in destinations if 1 in d.nodes]
    if local:
        assert 1 in chosen.nodes
        assert chosen.num_outstanding == min(d.num_outstanding for d in local)
    else:
        assert chosen.num_outstanding == min(d.num_outstanding for d in destinations)


@pytest.mark.parametrize("name, params, expected", [
    ("after_prefill", {}, TransferDecision(1, layerwise=False)),
    ("layerwise", {}, TransferDecision(1, layerwise=True, layer_groups=4)),
    ("layerwise", {"layer_groups": 8}, TransferDecision(1, layerwise=True, layer_groups=8)),
])
def test_the_policies_say_how_the_kv_moves(name: str, params: dict, expected: TransferDecision) -> None:
    policy = create_policy("transfer", name, params)
    destinations = [_decode(1, (0,), outstanding=2), _decode(2, (0,))]
    assert policy.plan(waiting(7), SOURCE, destinations, 0.0) == expected
