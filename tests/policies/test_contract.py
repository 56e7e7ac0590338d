"""The contract every registered policy keeps, built-in or plug-in, checked with hand-made views.

Each policy is built from its default parameters and a seeded generator, then called the way
the engine calls it on edge views (nothing to do, no free blocks, one-token and huge requests,
swapped and cache-hit requests) and on random ones. Its answers must be decisions the engine
can apply, and two instances built with the same seed must answer alike.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.policies import (
    CachedBlock,
    PolicyEntry,
    PreemptionMode,
    ScheduleDecision,
    SchedulerPolicy,
    SplitView,
    TransferDecision,
    TransferPolicy,
    all_policies,
    create_policy,
    register,
)
from servesim.policies.views import blocks_to_admit, computed_on_admission, new_blocks_needed
from tests.policies.views import (
    FakeCachedPrefix,
    FakeIteration,
    FakeKv,
    FakeReplica,
    FakeRequest,
    decoding,
    finished,
    preempted,
    prefilling,
    waiting,
)

SEED = 7
NOW = 10.0


def build(entry: PolicyEntry, seed: int = SEED) -> Any:
    """The policy with its default parameters; a scheduler gets the default preemption policy."""
    collaborators: dict[str, Any] = {"rng": np.random.default_rng(seed)}
    if entry.kind == "scheduler":
        collaborators["preemption"] = create_policy("preemption", "recompute", {}, rng=np.random.default_rng(seed))
    return create_policy(entry.kind, entry.name, {}, **collaborators)


# Edge views -------------------------------------------------------------------------------------

def _empty() -> FakeReplica:
    return FakeReplica()


def _waiting_only() -> FakeReplica:
    return FakeReplica(waiting=[waiting(0, 3000, 50, 1.0), waiting(1, 20, 400, 2.0, priority=1),
                                waiting(2, 700, 2, 3.0, ttft_deadline_s=4.0)])


def _running_only() -> FakeReplica:
    return FakeReplica(running=[decoding(0, 100, 20, 5), prefilling(1, 5000, 4096), decoding(2, 16, 3, 2)])


def _mixed() -> FakeReplica:
    return FakeReplica(running=[decoding(0, 100, 20, 5), prefilling(1, 900, 512)],
                       waiting=[waiting(2, 300, 30, 8.0), waiting(3, 40, 4, 9.0, priority=2)])


def _zero_free_blocks() -> FakeReplica:
    # Every running request is at a block boundary: its next token needs a new block.
    return FakeReplica(running=[decoding(0, 32, 10, 1), decoding(1, 47, 10, 2), prefilling(2, 100, 64)],
                       waiting=[waiting(3, 10, 5, 9.0)], kv=FakeKv(num_blocks=12, num_free_blocks=0))


def _one_free_block() -> FakeReplica:
    return FakeReplica(running=[decoding(0, 32, 10, 1), decoding(1, 48, 10, 2)],
                       waiting=[waiting(2, 15, 5, 9.0), waiting(3, 40, 5, 9.5)],
                       kv=FakeKv(num_blocks=6, num_free_blocks=1))


def _one_token() -> FakeReplica:
    return FakeReplica(running=[decoding(0, 1, 2, 1)], waiting=[waiting(1, 1, 1, 9.0), waiting(2, 1, 1, 9.0)])


def _huge_prompts() -> FakeReplica:
    return FakeReplica(running=[prefilling(0, 1_000_000, 500_000)],
                       waiting=[waiting(1, 2_000_000, 1, 5.0), waiting(2, 900_000, 100_000, 6.0)],
                       kv=FakeKv(num_blocks=300_000, num_free_blocks=200_000))


def _requeued() -> FakeReplica:
    return FakeReplica(running=[decoding(0, 64, 8, 3)],
                       waiting=[preempted(1, 200, 50, 10), preempted(2, 64, 16, 4, swapped=True),
                                waiting(3, 80, 8, 9.0)],
                       kv=FakeKv(num_blocks=40, num_free_blocks=30))


def _prefix_hits() -> FakeReplica:
    prefixes = {1: FakeCachedPrefix(64, 4, 1), 2: FakeCachedPrefix(32, 2, 2)}
    return FakeReplica(running=[decoding(0, 64, 8, 3)], waiting=[waiting(1, 80, 8, 8.0), waiting(2, 33, 4, 9.0)],
                       kv=FakeKv(num_blocks=30, num_free_blocks=10, prefixes=prefixes, shared_blocks={0: 2}))


def _sequences_full() -> FakeReplica:
    return FakeReplica(running=[decoding(i, 16, 100, 1 + i % 50, arrival_s=i * 0.01) for i in range(300)],
                       waiting=[waiting(300, 16, 4, 9.0)], kv=FakeKv(num_blocks=5000, num_free_blocks=4000))


def _with_history() -> FakeReplica:
    done = [finished(100 + i, 10 + 7 * i, "chat" if i % 2 else "batch") for i in range(30)]
    return FakeReplica(waiting=[waiting(0, 50, 5, 9.0, slo_class="chat"), waiting(1, 50, 500, 9.5, slo_class="code")],
                       recently_finished=done)


SCENARIOS: dict[str, Callable[[], FakeReplica]] = {
    "empty": _empty,
    "waiting_only": _waiting_only,
    "running_only": _running_only,
    "mixed": _mixed,
    "zero_free_blocks": _zero_free_blocks,
    "one_free_block": _one_free_block,
    "one_token": _one_token,
    "huge_prompts": _huge_prompts,
    "requeued": _requeued,
    "prefix_hits": _prefix_hits,
    "sequences_full": _sequences_full,
    "with_history": _with_history,
}


def _suspended() -> FakeReplica:
    """An iteration suspended at an operator boundary by an urgent arrival (interrupting schedulers only)."""
    held = prefilling(0, 4000, 0)
    return FakeReplica(running=[decoding(1, 30, 10, 2)], waiting=[waiting(2, 50, 4, 9.9, ttft_deadline_s=10.5)],
                       suspended=[FakeIteration([(held, 4000)], start_s=9.0, remaining_s=0.3)])


def _requests(replica: FakeReplica) -> list[FakeRequest]:
    return [*replica.running, *replica.waiting, *replica.recently_finished]


# Checks per kind --------------------------------------------------------------------------------

def _schedule_outcome(decision: ScheduleDecision, replica: FakeReplica) -> tuple:
    """The decision with request ids for requests, to compare decisions of two instances."""
    resume = None if decision.resume is None else replica.suspended.index(decision.resume)
    return (
        [(r.request_id, n) for r, n in decision.scheduled],
        [r.request_id for r in decision.preempted],
        list(decision.padding),
        decision.wake_at,
        resume,
    )


def check_schedule(policy: SchedulerPolicy, replica: FakeReplica, now: float) -> Any:
    """The engine can apply the decision: right requests, tokens, budgets and blocks."""
    decision = policy.schedule(replica, now)
    assert isinstance(decision, ScheduleDecision), f"schedule returned {decision!r}"
    running = {id(r): r for r in replica.running}
    queued = {id(r): r for r in replica.waiting}
    kv = replica.kv

    preempted_ids = [id(r) for r in decision.preempted]
    assert len(set(preempted_ids)) == len(preempted_ids), "a request preempted twice"
    assert all(i in running for i in preempted_ids), "preempted a request that is not running"

    seen: set[int] = set()
    tokens = 0
    blocks = 0
    num_admitted = 0
    for request, num_new in decision.scheduled:
        key = id(request)
        assert key not in seen, f"request {request.request_id} scheduled twice"
        seen.add(key)
        assert key in running or key in queued, f"request {request.request_id} is neither running nor waiting"
        assert key not in preempted_ids, f"request {request.request_id} both preempted and scheduled"
        assert isinstance(num_new, int) and num_new >= 1, f"request {request.request_id} given {num_new!r} tokens"
        left = request.num_tokens - request.num_computed_tokens
        assert num_new <= left, f"request {request.request_id} given {num_new} tokens, has {left} left"
        if key in running:
            blocks += new_blocks_needed(request, num_new, kv.block_size)
        else:
            num_new = min(num_new, request.num_tokens - computed_on_admission(request, kv))  # as the engine clips
            blocks += blocks_to_admit(request, num_new, kv)
            num_admitted += 1
        tokens += num_new

    freed = sum(kv.num_exclusive_blocks(r) for r in decision.preempted)
    assert blocks <= kv.num_free_blocks + freed, f"needs {blocks} blocks, {kv.num_free_blocks} free + {freed} freed"
    params = policy.params
    if hasattr(params, "max_num_batched_tokens"):
        assert tokens <= params.max_num_batched_tokens, f"{tokens} tokens over max_num_batched_tokens"
    if hasattr(params, "max_num_seqs") and num_admitted:
        after = len(replica.running) - len(decision.preempted) + num_admitted
        assert after <= params.max_num_seqs, f"admitted up to {after} sequences, max_num_seqs {params.max_num_seqs}"
    for num_new, context in decision.padding:
        assert num_new >= 1 and context >= 0, f"padding entry {(num_new, context)}"
    if decision.wake_at is not None:
        assert math.isfinite(decision.wake_at) and decision.wake_at > now, (
            f"wake_at {decision.wake_at} not after now {now}: the replica would spin"
        )
    if decision.resume is not None:
        assert any(decision.resume is it for it in replica.suspended), "resumed an iteration that is not suspended"
        assert not decision.scheduled, "scheduled entries beside a resumed iteration are ignored"
    for request in _requests(replica):
        error = policy.admission_error(request)
        assert error is None or (isinstance(error, str) and error), f"admission_error returned {error!r}"
    assert isinstance(policy.stable_under_decode, bool)
    return _schedule_outcome(decision, replica)


def check_queue(policy: Any, replica: FakeReplica, now: float) -> Any:
    requests = _requests(replica)
    keys = [policy.key(r, replica, now) for r in requests]
    sorted(keys)  # raises TypeError if two keys cannot be compared
    assert keys == [policy.key(r, replica, now) for r in requests], "a request's key changed between two calls"
    return keys


def check_predictor(policy: Any, replica: FakeReplica, now: float) -> Any:
    predictions = []
    for request in _requests(replica):
        value = policy.predict(request, replica, now)
        assert isinstance(value, float) and math.isfinite(value) and value >= 1, (
            f"prediction {value!r} for request {request.request_id}"
        )
        predictions.append(value)
    return predictions


def check_preemption(policy: Any, replica: FakeReplica, now: float) -> Any:
    choices = []
    candidates = list(replica.running) or [decoding(0, 16, 4, 1)]
    for size in range(1, len(candidates) + 1):
        group = candidates[:size]
        victim = policy.select_victim(group, now)
        assert any(victim is c for c in group), f"victim {victim!r} is not a candidate"
        for free in (0, victim.num_blocks, 10**6):
            mode = policy.mode(victim, FakeKv(num_blocks=10**6, num_free_blocks=free), now)
            assert isinstance(mode, PreemptionMode), f"mode returned {mode!r}"
            choices.append((victim.request_id, mode))
    return choices


BLOCKS = [
    CachedBlock(0, 0, 1.0, 5), CachedBlock(1, 1, 1.0, 0), CachedBlock(2, 0, 9.5, 0),
    CachedBlock(3, 40, 0.0, 100), CachedBlock(4, 2, 9.5, 5),
]


def check_eviction(policy: Any, replica: FakeReplica, now: float) -> Any:
    keys = [policy.key(block, now) for block in BLOCKS]
    sorted(keys)
    return keys


def _pools(replica: FakeReplica) -> list[list[FakeReplica]]:
    other = FakeReplica(replica_id=1, waiting=[waiting(50, 100, 10)])
    return [[replica], [replica, other], [other, FakeReplica(replica_id=2), replica]]


def check_router(policy: Any, replica: FakeReplica, now: float) -> Any:
    chosen = []
    for pool in _pools(replica):
        for request in _requests(replica) or [waiting(99)]:
            index = policy.route(request, pool, now)
            assert isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(pool), (
                f"route returned {index!r} for {len(pool)} replicas"
            )
            chosen.append(index)
    return chosen


def check_transfer(policy: Any, replica: FakeReplica, now: float) -> Any:
    plans = []
    for pool in _pools(replica):
        for request in _requests(replica) or [waiting(99)]:
            plan = policy.plan(request, replica, pool, now)
            assert isinstance(plan, TransferDecision), f"plan returned {plan!r}"
            assert isinstance(plan.destination, int) and 0 <= plan.destination < len(pool), f"destination {plan!r}"
            assert isinstance(plan.layerwise, bool)
            plans.append((plan.destination, plan.layerwise))
    return plans


def check_split(policy: Any, replica: FakeReplica, now: float) -> Any:
    """A share from 0 to 1, above 0 with a prefill batch and below 1 with a decode batch; the
    replica's queues give the loads (its running and waiting requests)."""
    shares = []
    decodes = sum(1 for r in replica.running if r.num_generated)
    queued = sum(r.num_tokens - r.num_computed_tokens for r in [*replica.running, *replica.waiting])

    def predict(prefill_shares: Any) -> tuple[Any, Any]:
        prefill_shares = np.asarray(prefill_shares, dtype=float)
        return 0.1 / prefill_shares, 0.01 / (1 - prefill_shares)

    for current in (0.0, 0.5, 1.0):
        for prefill_tokens, num_decodes in ((queued, decodes), (0, decodes), (queued, 0), (1, 1)):
            split = SplitView(current, prefill_tokens, num_decodes, max(queued, prefill_tokens), predict)
            share = policy.prefill_share(split, now)
            assert isinstance(share, float) and 0 <= share <= 1, f"prefill_share returned {share!r}"
            assert not (prefill_tokens and share <= 0), f"share {share} leaves a running prefill no SMs"
            assert not (num_decodes and share >= 1), f"share {share} leaves a running decode no SMs"
            shares.append(share)
    return shares


CHECKS: dict[str, Callable[[Any, FakeReplica, float], Any]] = {
    "scheduler": check_schedule,
    "queue": check_queue,
    "predictor": check_predictor,
    "preemption": check_preemption,
    "eviction": check_eviction,
    "router": check_router,
    "transfer": check_transfer,
    "split": check_split,
}


def scenarios_for(entry: PolicyEntry) -> dict[str, Callable[[], FakeReplica]]:
    """The edge views; a scheduler that interrupts iterations also sees a suspended one."""
    if entry.kind == "scheduler" and entry.cls.interrupt is not SchedulerPolicy.interrupt:
        return {**SCENARIOS, "suspended": _suspended}
    return SCENARIOS


def check_policy(entry: PolicyEntry) -> None:
    """Run the kind's check on every edge view, twice from the same seed, and compare."""
    assert entry.kind in CHECKS, f"no contract for policy kind {entry.kind!r}: add one to this test"
    check = CHECKS[entry.kind]
    for name, scenario in scenarios_for(entry).items():
        replica = scenario()
        try:
            first = check(build(entry), replica, NOW)
            second = check(build(entry), replica, NOW)
        except AssertionError as exc:
            raise AssertionError(f"{entry.kind} {entry.name!r}, view {name!r}: {exc}") from None
        assert first == second, f"{entry.kind} {entry.name!r}, view {name!r}: not deterministic for a fixed seed"


ENTRIES = all_policies()


@pytest.mark.parametrize("entry", ENTRIES, ids=[f"{e.kind}:{e.name}" for e in ENTRIES])
def test_policy_keeps_the_contract(entry: PolicyEntry) -> None:
    check_policy(entry)


def test_every_kind_with_a_builtin_is_covered() -> None:
    kinds = {entry.kind for entry in ENTRIES}
    assert kinds >= {"scheduler", "queue", "predictor", "preemption", "eviction", "router"}


# Random views -----------------------------------------------------------------------------------

@st.composite
def replica_views(draw: st.DrawFn) -> FakeReplica:
    """Consistent replica states: running requests prefilling or decoding, waiting ones fresh
    (possibly with a cache hit), preempted or swapped out, and a pool with some blocks free."""
    block_size = draw(st.sampled_from([1, 4, 16]))
    ids = iter(range(1000))
    running = []
    for _ in range(draw(st.integers(0, 6))):
        prompt = draw(st.integers(1, 6000))
        output = draw(st.integers(1, 500))
        if draw(st.booleans()) and output > 1:
            running.append(decoding(next(ids), prompt, output, draw(st.integers(1, output - 1)), block_size))
        elif prompt > 1:
            running.append(prefilling(next(ids), prompt, draw(st.integers(1, prompt - 1)), output, block_size))
    queue = []
    prefixes = {}
    for _ in range(draw(st.integers(0, 6))):
        prompt = draw(st.integers(1, 20000))
        output = draw(st.integers(2, 500))
        request_id = next(ids)
        state = draw(st.sampled_from(["fresh", "recompute", "swapped"]))
        arrival = draw(st.floats(0, NOW))
        if state == "fresh":
            queue.append(waiting(request_id, prompt, output, arrival, priority=draw(st.integers(0, 2))))
            hit = draw(st.integers(0, (prompt - 1) // block_size))  # the engine leaves a token to compute
            if hit:
                prefixes[request_id] = FakeCachedPrefix(hit * block_size, hit, draw(st.integers(0, hit)))
        else:
            generated = draw(st.integers(1, output - 1))
            queue.append(preempted(request_id, prompt, output, generated, arrival, swapped=state == "swapped"))
    used = sum(r.num_blocks for r in running)
    free = draw(st.integers(0, 3000))
    return FakeReplica(running=running, waiting=queue, kv=FakeKv(used + free, free, block_size, prefixes))


SCHEDULERS = [e for e in ENTRIES if e.kind == "scheduler"]


@pytest.mark.parametrize("entry", SCHEDULERS, ids=[e.name for e in SCHEDULERS])
@settings(max_examples=40)
@given(replica=replica_views())
def test_schedulers_decide_validly_on_random_views(entry: PolicyEntry, replica: FakeReplica) -> None:
    assert check_schedule(build(entry), replica, NOW) == check_schedule(build(entry), replica, NOW)


# The contract test itself -----------------------------------------------------------------------

class GreedyTransferPolicy(TransferPolicy):
    """Send KV to the destination with the fewest outstanding requests, layer by layer."""

    def plan(self, request: Any, source: Any, destinations: Sequence[Any], now: float) -> TransferDecision:
        best = min(range(len(destinations)), key=lambda i: (destinations[i].num_outstanding, i))
        return TransferDecision(best, layerwise=True)


class DoubleBookingScheduler(SchedulerPolicy):
    """Schedules the first waiting request twice: a decision the engine cannot apply."""

    def schedule(self, replica: Any, now: float) -> ScheduleDecision:
        head = replica.waiting[:1]
        return ScheduleDecision(scheduled=[(r, 1) for r in head * 2])


class OverbookingScheduler(SchedulerPolicy):
    """Admits every waiting request whole, whatever the free blocks."""

    def schedule(self, replica: Any, now: float) -> ScheduleDecision:
        return ScheduleDecision(scheduled=[(r, r.num_tokens) for r in replica.waiting])


class SpinningScheduler(SchedulerPolicy):
    """Asks to be woken at the current time: the replica would loop without time advancing."""

    def schedule(self, replica: Any, now: float) -> ScheduleDecision:
        return ScheduleDecision(wake_at=now)


def test_a_transfer_plug_in_is_checked_too(isolated_registry: dict) -> None:
    register("transfer", "greedy_test")(GreedyTransferPolicy)
    entry = next(e for e in all_policies() if e.kind == "transfer")
    check_policy(entry)


@pytest.mark.parametrize("cls, problem", [
    (DoubleBookingScheduler, "scheduled twice"),
    (OverbookingScheduler, "blocks"),
    (SpinningScheduler, "would spin"),
])
def test_the_contract_rejects_decisions_the_engine_cannot_apply(isolated_registry: dict, cls: type,
                                                                problem: str) -> None:
    register("scheduler", "broken_test")(cls)
    with pytest.raises(AssertionError, match=problem):
        check_policy(next(e for e in all_policies() if e.name == "broken_test"))
