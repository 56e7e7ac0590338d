"""The decision check's lean path accepts only what the full check accepts, with the same result.

`DecisionChecker._scheduled_lean` runs for every step and hands anything unusual to
`_scheduled`, which names the broken rule; the two must never disagree on a decision.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.policies import create_policy
from servesim.policies.contract import PolicyContractError
from servesim.sim.engine.decision_check import DecisionChecker
from servesim.sim.engine.request import Request, RequestState

SCHEDULER = create_policy("scheduler", "vllm", {}, preemption=create_policy("preemption", "recompute", {}))
STATES = (RequestState.RUNNING, RequestState.WAITING, RequestState.SWAPPED, RequestState.FINISHED)


@dataclass
class FakeReplica:
    """What the checker reads of a replica."""

    replica_id: int = 0
    suspended: list[Any] = field(default_factory=list)
    running: list[Request] = field(default_factory=list)


def _request(index: int, state: RequestState, computed: int, replica_id: int = 0) -> Request:
    request = Request(request_id=index, arrival_s=0.0, prompt_tokens=8, output_tokens=4)
    request.state, request.num_computed_tokens, request.replica_id = state, computed, replica_id
    return request


REQUESTS = [_request(i, STATES[i % len(STATES)], computed=i % 9, replica_id=int(i == 5)) for i in range(10)]
CHECKER = DecisionChecker(FakeReplica(running=[r for r in REQUESTS if r.state is RequestState.RUNNING]),
                          SCHEDULER)

tokens = st.one_of(st.integers(-1, 10), st.sampled_from([np.int64(2), 1.0, 2.5, "3", None, True]))
plausible = st.tuples(st.sampled_from(REQUESTS), st.integers(1, 3)).map(lambda p: (p[0].view, p[1]))
pairs = st.one_of(
    plausible, plausible, plausible, plausible, plausible, plausible,  # mostly decisions the lean path answers
    st.tuples(st.sampled_from(REQUESTS), tokens).map(lambda p: (p[0].view, p[1])),
    st.tuples(st.sampled_from(REQUESTS), tokens).map(lambda p: [p[0].view, p[1]]),
    st.sampled_from(REQUESTS).map(lambda r: (r.view, 1, 1)),
    st.sampled_from(REQUESTS).map(lambda r: (r, 1)),
    st.just(()),
)


def _full(scheduled: Any, preempted: list[Request]) -> Any:
    try:
        return CHECKER._scheduled(scheduled, set(), preempted, 0.0)
    except PolicyContractError:
        return "error"


@settings(max_examples=400)
@given(st.lists(pairs, max_size=4), st.lists(st.sampled_from(REQUESTS), max_size=2, unique=True), st.booleans())
def test_the_lean_check_agrees_with_the_full_check(scheduled, preempted, as_tuple):
    scheduled = tuple(scheduled) if as_tuple else scheduled
    lean = CHECKER._scheduled_lean(scheduled, set(), preempted)
    full = _full(scheduled, preempted)
    if full == "error":
        assert lean is None
    elif lean is not None:
        assert lean == full


def test_the_lean_check_answers_a_usual_decision_itself():
    """A running decode and an admitted prompt chunk: the hot path must not fall through."""
    running, waiting = REQUESTS[0], REQUESTS[1]
    scheduled = [(running.view, 1), (waiting.view, 2)]
    assert CHECKER._scheduled_lean(scheduled, set(), []) == ([(running, 1), (waiting, 2)], 1, 3)


@pytest.mark.parametrize("scheduled, preempted", [
    ([(REQUESTS[0].view, 1), (REQUESTS[0].view, 1)], []),  # named twice
    ([(REQUESTS[0].view, 1)], [REQUESTS[0]]),  # preempted and scheduled
    ([(REQUESTS[5].view, 1)], []),  # another replica's request
    ([(REQUESTS[3].view, 1)], []),  # finished
    ([(REQUESTS[0].view, 9)], []),  # more tokens than it has left
])
def test_a_broken_decision_falls_through_to_the_full_check(scheduled, preempted):
    assert CHECKER._scheduled_lean(scheduled, set(), preempted) is None
    assert _full(scheduled, preempted) == "error"


def test_a_suspended_iteration_sends_every_decision_to_the_full_check():
    held = {id(REQUESTS[0])}
    assert CHECKER._scheduled_lean([(REQUESTS[4].view, 1)], held, []) is None
