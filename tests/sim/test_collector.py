"""A run's garbage-collector settings are undone after it, and a caller's frozen heap stays frozen."""
import gc

import pytest

from servesim.sim.engine.collector import YOUNG_THRESHOLD, simulation_collector


def test_settings_hold_during_the_run_and_are_restored_after_it_even_on_an_error():
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), simulation_collector():
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0
        raise RuntimeError("the run failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_heap_the_caller_froze_stays_frozen():
    held = [object()]  # tracked by the collector: frozen with the caller's heap
    gc.freeze()
    try:
        with simulation_collector():
            assert _is_frozen(held)
        assert _is_frozen(held)
    finally:
        gc.unfreeze()
    assert not _is_frozen(held)


def _is_frozen(tracked: object) -> bool:
    """Frozen objects are in none of the generations the collector walks. (The count of frozen
    objects is no test: it falls whenever one of them is freed, by anyone.)"""
    return not any(candidate is tracked for candidate in gc.get_objects())


def test_cycles_made_during_the_run_are_not_frozen():
    class Node:
        other: "Node"

    with simulation_collector():
        first = Node()
        first.other = Node()
        first.other.other = first
        del first
        assert gc.collect(0) >= 2  # the young generation still holds (and frees) the cycle
