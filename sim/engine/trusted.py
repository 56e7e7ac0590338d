"""Where a replica's decisions come from: a plug-in's through views and the check, a trusted
built-in's straight from the engine's own objects.

A plug-in scheduler reads read-only views and its decision is checked rule by rule
(`sim.engine.decision_check`): both cost a Python call per attribute or entry, for every running
request, at every engine step. The vLLM (first come, first served) and Sarathi-Serve schedulers
with a built-in preemption policy only read what they are given and build a decision from it;
given the requests, queues and KV pool themselves (which have the same attributes as their
views), they decide the same batch, and their decisions pass every rule of the check
(`tests/sim/test_trusted_schedule.py` checks both at every decision of random runs). So they are
handed the engine's objects and their decisions are taken as they are: about a sixth of
`bench_core`'s time. Nothing would stop one of them writing to what it reads, so that test is
their guard. A subclass, another queue order or preemption policy keeps the views and the check.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from servesim.policies import SchedulerPolicy
from servesim.policies.contract import policy_raised
from servesim.policies.preemption import RecomputePreemptionPolicy, SwapPreemptionPolicy
from servesim.policies.queues import FcfsQueuePolicy
from servesim.policies.schedulers.sarathi import SarathiSchedulerPolicy
from servesim.policies.schedulers.vllm import VllmSchedulerPolicy
from servesim.sim.engine.bookkeeping import checked_schedule
from servesim.sim.engine.decision_check import CheckedDecision, DecisionChecker

if TYPE_CHECKING:
    from servesim.sim.engine.replica import Replica

Decide = Callable[[float], CheckedDecision]

_TRUSTED_PREEMPTION = (RecomputePreemptionPolicy, SwapPreemptionPolicy)


def is_trusted(scheduler: SchedulerPolicy) -> bool:
    """Whether `scheduler` is a built-in whose decisions need neither views nor the check:
    exactly vLLM with the FCFS queue, or Sarathi-Serve, each with a built-in preemption policy."""
    if type(scheduler.preemption) not in _TRUSTED_PREEMPTION:
        return False
    if type(scheduler) is VllmSchedulerPolicy:
        return type(scheduler.queue) is FcfsQueuePolicy
    return type(scheduler) is SarathiSchedulerPolicy


class EngineSide:
    """A replica as a trusted scheduler sees it: what `BudgetScheduler` reads of its `ReplicaView`
    (the running batch, the queue, the KV pool), as the engine's requests and pool themselves."""

    __slots__ = ("_replica",)

    def __init__(self, replica: Replica) -> None:
        self._replica = replica

    @property
    def running(self) -> Sequence[Any]:
        return self._replica.running

    @property
    def waiting(self) -> Sequence[Any]:
        return self._replica.waiting

    @property
    def kv(self) -> Any:
        return self._replica.kv


def knows_next_decodes(scheduler: SchedulerPolicy) -> bool:
    """Whether the engine may take `scheduler`'s decision after a decode-only step without asking
    it, when it is certain: nothing waits or is staged, every running request was in that step
    (so each now decodes one token) and their next blocks fit in the free ones. The decision is
    then the step's batch minus the requests that finished, one token each, in the same order.

    True for the trusted schedulers. Why, for `vllm` (FCFS) and `sarathi` (`BudgetScheduler`):
    with nothing waiting, neither `prefill_first`, nor displacement (`preemptive`), nor admission
    runs; the running order is admission order, or (preemptive FCFS) a stable sort by arrival,
    which keeps the order of what remains; Sarathi-Serve's "decodes first" is that order when
    all decode. Each request gets `min(1, budget left)` tokens: the step before gave every one of
    them a token, so the budget covers the fewer that remain. A victim is chosen only when a
    request's blocks exceed what is free after those before it; the sum of all of them fits,
    so none is. Nothing else is read: no padding, no wake-up. `tests/sim/test_known_decodes.py`
    asks the scheduler at every such step of random runs and finds this batch."""
    return is_trusted(scheduler)


def decision_source(replica: Replica, scheduler: SchedulerPolicy, checker: DecisionChecker) -> Decide:
    """How `replica` gets its next decision at `now`: trusted, or through views and `checker`."""
    if not is_trusted(scheduler):
        view = replica.view
        return lambda now: checked_schedule(scheduler, view, checker, now)
    side = EngineSide(replica)
    schedule = scheduler.schedule

    def decide(now: float) -> CheckedDecision:
        try:
            decision = schedule(side, now)  # type: ignore[arg-type]
        except Exception as exc:
            raise policy_raised(scheduler, "scheduler.schedule", now, exc) from exc
        return CheckedDecision(decision.scheduled, decision.preempted, decision.padding,  # type: ignore[arg-type]
                               decision.wake_at, None)

    return decide
