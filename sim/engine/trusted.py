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
The engine goes one step further where it knows the answer: the next batch when nothing waits
(`known_next_batch`), and any decision of plain `vllm` or `sarathi` that preempts nothing
(`known_decision`), computed here, compiled with the engine, instead of in the policy's Python.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import is_, itemgetter
from typing import TYPE_CHECKING, Any

from servesim.policies import SchedulerPolicy
from servesim.policies.contract import policy_raised
from servesim.policies.preemption import RecomputePreemptionPolicy, SwapPreemptionPolicy
from servesim.policies.queues import FcfsQueuePolicy
from servesim.policies.schedulers.budget import BudgetScheduler
from servesim.policies.schedulers.sarathi import SarathiSchedulerPolicy
from servesim.policies.schedulers.vllm import VllmSchedulerPolicy
from servesim.policies.views import blocks_to_admit, computed_on_admission, new_blocks_needed
from servesim.sim.engine.bookkeeping import checked_schedule
from servesim.sim.engine.decision_check import CheckedDecision, DecisionChecker

if TYPE_CHECKING:
    from servesim.sim.engine.replica import Replica
    from servesim.sim.engine.request import Request

Decide = Callable[[float], CheckedDecision]
NextBatch = Callable[[float], "list[tuple[Request, int]] | None"]
"""The batch a trusted scheduler would decide at `now`, each request with its tokens; None: ask it."""

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


def known_next_batch(scheduler: SchedulerPolicy, replica: Replica) -> NextBatch | None:
    """How the engine may take `scheduler`'s next batch on `replica` without asking it; None for a
    scheduler that is not trusted.

    The batch is certain when nothing waits (arrivals staged during the step may: the step was
    planned without them) and the blocks it needs fit in the free ones; the caller checks both.
    Why, for `vllm` (FCFS) and `sarathi` (`BudgetScheduler.schedule`): with nothing waiting,
    neither `prefill_first`, nor displacement (`preemptive`), nor admission runs; a victim is
    chosen only when a request's blocks exceed what is free after those before it, and the sum
    of all of them fits, so none is. What is left
    is `_schedule_running` without preemption: each running request in the scheduler's own
    `order_running` computes the tokens it has not computed yet, cut to the token budget left.
    The function returns that batch, or None when the budget runs out before the last request
    (the scheduler then leaves requests out: let it decide). It is asked after every step, so a
    prompt's later chunks beside the running decodes, and the decodes after it, need no decision.
    Nothing else is read: no padding, no wake-up. `tests/sim/test_known_decodes.py` asks the
    scheduler at every step taken this way in random runs and finds this batch."""
    trusted = _running_order(scheduler, replica)
    if trusted is None:
        return None
    order_running, budget = trusted

    def next_batch(now: float) -> list[tuple[Request, int]] | None:
        left = budget
        entries: list[tuple[Request, int]] = []
        for request in order_running(now):
            if left <= 0:
                return None
            num_new = request.num_tokens - request.num_computed_tokens
            if num_new > left:
                num_new = left
            left -= num_new
            entries.append((request, num_new))
        return entries

    return next_batch


DecodeOrder = Callable[[float], "list[Request] | None"]
"""The running requests in a trusted scheduler's order at `now`, when each decodes one token; None: ask it."""


def known_decode_order(scheduler: SchedulerPolicy, replica: Replica) -> DecodeOrder | None:
    """`known_next_batch` for the case the caller knows: every running request decodes next.
    Its batch is then each in `order_running`'s order with one token, when the budget covers
    them all (else it returns None, as `known_next_batch` does); None for a scheduler that is
    not trusted."""
    trusted = _running_order(scheduler, replica)
    if trusted is None:
        return None
    order_running, budget = trusted

    def decode_order(now: float) -> list[Request] | None:
        order = order_running(now)
        return order if len(order) <= budget else None

    return decode_order


PromptChunk = Callable[["list[tuple[Request, int]]", float], "int | None"]
"""The tokens of each later chunk of the prompt that a batch of decodes ends with; None: unknown."""


def known_prompt_chunk(scheduler: SchedulerPolicy, replica: Replica) -> PromptChunk | None:
    """How the engine may know the chunks a trusted `scheduler` gives the prompt that ends a batch
    of running decodes, at the steps after it (`sim.engine.prompt_chunks`); None for a scheduler
    that is not trusted.

    The batch's entries must be every running request in `order_running`'s order: then at each
    later step, while nothing waits, no request finishes and the blocks fit (the caller checks
    these), `known_next_batch` gives each decode one token and the prompt what the budget leaves,
    budget minus the decodes, up to what it has left. The order stays the same meanwhile: vLLM's
    is the running list's, Sarathi's the decodes' then the prompts', and neither changes before
    the prompt is done or a request finishes. The function returns that chunk, or None when the
    order differs or the decodes take the whole budget."""
    trusted = _running_order(scheduler, replica)
    if trusted is None:
        return None
    order_running, budget = trusted

    def prompt_chunk(entries: list[tuple[Request, int]], now: float) -> int | None:
        order = order_running(now)
        if len(order) != len(entries) or not all(map(is_, order, map(itemgetter(0), entries))):
            return None
        chunk = budget - (len(entries) - 1)
        return chunk if chunk > 0 else None

    return prompt_chunk


def _running_order(scheduler: SchedulerPolicy, replica: Replica,
                   ) -> tuple[Callable[[float], list[Request]], int] | None:
    """A trusted scheduler's order of the running requests at a time, on the engine's own objects,
    and its token budget; None for a scheduler that is not trusted."""
    if not is_trusted(scheduler):
        return None
    assert isinstance(scheduler, BudgetScheduler)  # both trusted schedulers are
    side = EngineSide(replica)
    order_running = scheduler.order_running

    def order(now: float) -> list[Request]:
        return order_running(side, now)  # type: ignore[arg-type, return-value]

    return order, scheduler.params.max_num_batched_tokens


KnownDecision = Callable[[float], "CheckedDecision | None"]
"""A trusted scheduler's decision at `now`, made here; None: ask the scheduler."""


def known_decision(scheduler: SchedulerPolicy, replica: Replica) -> KnownDecision | None:
    """How the engine may make a trusted `scheduler`'s decision itself, when no request is
    preempted; None for a scheduler whose decisions it does not know.

    This is `BudgetScheduler.schedule` as `vllm` (neither `prefill_first` nor `preemptive`) and
    `sarathi` run it, on the engine's objects, compiled with the engine: the running requests in
    the scheduler's own `order_running`, each computing what it has left within the token budget,
    then the waiting ones in queue order while the budgets, the sequence slots and the free blocks
    last (vLLM's `reserve_full_isl` as its `fits_on_admission`; neither has a `may_admit`). The
    one branch it does not take is a victim's: when a running request's blocks exceed what is
    free, the function returns None and the scheduler decides, preemption policy and all.
    `tests/sim/test_trusted_schedule.py` compares it with the view decision at every decision of
    random runs."""
    trusted = _running_order(scheduler, replica)
    if trusted is None:
        return None
    assert isinstance(scheduler, BudgetScheduler)  # both trusted schedulers are
    if isinstance(scheduler, VllmSchedulerPolicy):
        if scheduler.params.prefill_first or scheduler.params.preemptive:
            return None
        reserve_full_isl = scheduler.params.reserve_full_isl
    else:
        reserve_full_isl = False
    order_running, max_tokens = trusted
    max_seqs = scheduler.params.max_num_seqs
    chunked = scheduler.params.chunked_prefill

    def decide(now: float) -> CheckedDecision | None:
        running = order_running(now)
        kv = replica.kv
        block_size = kv.block_size
        free = kv.num_free_blocks
        budget = max_tokens
        entries: list[tuple[Request, int]] = []
        for request in running:
            if budget <= 0:
                break
            num_new = request.num_tokens - request.num_computed_tokens
            if num_new > budget:
                num_new = budget
            need = new_blocks_needed(request, num_new, block_size)
            if need > free:
                return None  # a victim is chosen: the scheduler's preemption policy decides
            free -= need
            budget -= num_new
            entries.append((request, num_new))
        num_running = len(running)
        for waiting in replica.waiting:
            if budget <= 0 or num_running >= max_seqs:
                break
            computed = computed_on_admission(waiting, kv)
            num_new = waiting.num_tokens - computed
            if num_new > budget:
                if not chunked:
                    break
                num_new = budget
            need = blocks_to_admit(waiting, num_new, kv)
            if need > free or (reserve_full_isl and blocks_to_admit(waiting, waiting.num_tokens - computed, kv) > free):
                break
            free -= need
            budget -= num_new
            num_running += 1
            entries.append((waiting, num_new))
        return CheckedDecision(entries, [], [], None, None)

    return decide


def decision_source(replica: Replica, scheduler: SchedulerPolicy, checker: DecisionChecker) -> Decide:
    """How `replica` gets its next decision at `now`: made here (`known_decision`), trusted, or
    through views and `checker`."""
    if not is_trusted(scheduler):
        view = replica.view
        return lambda now: checked_schedule(scheduler, view, checker, now)
    side = EngineSide(replica)
    schedule = scheduler.schedule
    known = known_decision(scheduler, replica)

    def decide(now: float) -> CheckedDecision:
        if known is not None:
            decision_made = known(now)
            if decision_made is not None:
                return decision_made
        try:
            decision = schedule(side, now)  # type: ignore[arg-type]
        except Exception as exc:
            raise policy_raised(scheduler, "scheduler.schedule", now, exc) from exc
        return CheckedDecision(decision.scheduled, decision.preempted, decision.padding,  # type: ignore[arg-type]
                               decision.wake_at, None)

    return decide
