"""Max-min fairness by progressive filling: closed forms and properties over random flow sets."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from servesim.sim.network.fair_share import max_min_rates


def test_one_link_is_shared_equally() -> None:
    assert max_min_rates([["a"], ["a"], ["a"]], {"a": 30.0}) == [10.0, 10.0, 10.0]


def test_a_flow_held_back_elsewhere_leaves_its_share_to_the_others() -> None:
    # flow 0 is limited to 2 by link b, so flow 1 gets the rest of link a
    assert max_min_rates([["a", "b"], ["a"]], {"a": 10.0, "b": 2.0}) == [2.0, 8.0]


def test_a_flow_without_links_is_refused() -> None:
    with pytest.raises(ValueError, match="crosses no link"):
        max_min_rates([[]], {})


flow_sets = st.integers(2, 6).flatmap(lambda num_links: st.tuples(
    st.lists(st.floats(0.5, 100.0), min_size=num_links, max_size=num_links),
    st.lists(st.lists(st.integers(0, num_links - 1), min_size=1, max_size=3, unique=True), min_size=1, max_size=12),
))


@given(flow_sets)
def test_rates_are_feasible_and_max_min_fair(case: tuple[list[float], list[list[int]]]) -> None:
    capacities, paths = case
    capacity = dict(enumerate(capacities))
    rates = max_min_rates(paths, capacity)
    load = {link: sum(rate for rate, path in zip(rates, paths, strict=True) if link in path) for link in capacity}
    for link, total in load.items():
        assert total <= capacity[link] * (1 + 1e-9)
    # max-min fairness: every flow crosses a full link on which no flow gets more than it does
    for flow, path in enumerate(paths):
        assert rates[flow] > 0
        assert any(load[link] >= capacity[link] * (1 - 1e-9)
                   and all(rates[other] <= rates[flow] * (1 + 1e-9) for other, p in enumerate(paths) if link in p)
                   for link in path), (flow, rates)
