"""Every scheduling decision is checked against the replica's state before anything is applied.

A plug-in's mistake must stop the run with a message that names the policy, the hook, the
simulated time and the broken rule, never surface later as a broken invariant deep in the
engine. The rules: scheduled and preempted requests are views the engine handed out of this
replica's queues, each named at most once; token counts are positive integers no larger than
what the request has left and, summed, within the scheduler's own `max_num_batched_tokens`
(and running requests within `max_num_seqs`) when it has those budgets; padding entries are
(positive, non-negative) integer pairs; `resume` is a suspended iteration and runs alone;
`wake_at` is finite and strictly after now. Memory is checked where blocks are allocated
(`Replica`), because prefix-cache hits are only known on admission.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from servesim.hwmodels.shapes import LayerSlice
from servesim.policies import ScheduleDecision, SchedulerPolicy
from servesim.policies.contract import PolicyContractError, contract_violation, is_count, is_finite_number
from servesim.sim.engine.iteration import Iteration
from servesim.sim.engine.request import Request, RequestState
from servesim.sim.engine.views import IterationView, RequestView

if TYPE_CHECKING:
    from servesim.sim.engine.replica import Replica

HOOK = "scheduler.schedule"
_RUNNING = RequestState.RUNNING
_QUEUED = (RequestState.WAITING, RequestState.SWAPPED)
_NONE_HELD: set[int] = set()
_FIRST = itemgetter(0)


@dataclass(slots=True)
class CheckedDecision:
    """A decision in engine terms: requests instead of views, the suspended iteration to resume."""

    entries: list[tuple[Request, int]]
    preempted: list[Request]
    padding: list[tuple[int, int]]
    wake_at: float | None
    resume: Iteration | None
    layer_slices: Mapping[int, LayerSlice] | None = None


class DecisionChecker:
    """Checks one replica's scheduler decisions; the budgets are read once from its parameters."""

    def __init__(self, replica: Replica, scheduler: SchedulerPolicy) -> None:
        self.replica = replica
        self.scheduler = scheduler
        self.max_tokens: int | None = getattr(scheduler.params, "max_num_batched_tokens", None)
        self.max_seqs: int | None = getattr(scheduler.params, "max_num_seqs", None)

    def violation(self, now: float, problem: str) -> PolicyContractError:
        return contract_violation(self.scheduler, HOOK, now, problem)

    def check(self, decision: Any, now: float) -> CheckedDecision:
        if not isinstance(decision, ScheduleDecision):
            raise self.violation(now, f"returned {type(decision).__name__}, not a ScheduleDecision")
        held = self._held()
        preempted = self._preempted(decision.preempted, held, now)
        lean = self._scheduled_lean(decision.scheduled, held, preempted)
        entries, admitted, total = lean or self._scheduled(decision.scheduled, held, preempted, now)
        self._budgets(total, admitted, len(preempted), now)
        padding = self._padding(decision.padding, now)
        resume = self._resume(decision, now)
        wake_at = decision.wake_at
        if wake_at is not None and not (is_finite_number(wake_at) and wake_at > now):
            raise self.violation(now, f"wake_at={wake_at!r} must be a finite time strictly after now ({now!r})")
        slices = decision.layer_slices
        if slices:
            self._layer_slices(slices, entries, now)
        return CheckedDecision(entries, preempted, padding, wake_at, resume, slices)

    def _held(self) -> set[int]:
        """Requests inside suspended iterations: running, but not the scheduler's to touch."""
        suspended = self.replica.suspended
        return {id(r) for iteration in suspended for r, _ in iteration.entries} if suspended else _NONE_HELD

    def _request(self, view: Any, what: str, now: float) -> Request:
        if type(view) is not RequestView:
            raise self.violation(now, f"{what} {view!r}, which is not a request view the engine gave the scheduler")
        request: Request = view._request
        if request.replica_id != self.replica.replica_id:
            raise self.violation(now, f"{what} {request!r}, which belongs to replica {request.replica_id}")
        return request

    def _preempted(self, views: Any, held: set[int], now: float) -> list[Request]:
        preempted = []
        seen: set[int] = set()
        for view in _as_list(views, "preempted", self, now):
            request = self._request(view, "preempted", now)
            if request.state is not _RUNNING or id(request) in held:
                raise self.violation(now, f"preempted {request!r}, which is not running")
            if id(request) in seen:
                raise self.violation(now, f"preempted {request!r} twice")
            seen.add(id(request))
            preempted.append(request)
        return preempted

    def _scheduled_lean(self, pairs: Any, held: set[int], preempted: list[Request],
                        ) -> tuple[list[tuple[Request, int]], int, int] | None:
        """`_scheduled` for the usual decision (a list of (view, int) pairs, nothing suspended), or
        None at the first doubt, when `_scheduled` finds and names the problem. The hot path: a
        request named twice is found once at the end (a set of the entries), not per entry."""
        if held or type(pairs) is not list:
            return None
        entries: list[tuple[Request, int]] = []
        append = entries.append
        total = admitted = 0
        replica_id = self.replica.replica_id
        view_type, int_type, tuple_type = RequestView, int, tuple
        running = _RUNNING
        try:
            for pair in pairs:
                if type(pair) is not tuple_type:
                    return None
                view, num_new = pair
                if type(view) is not view_type or type(num_new) is not int_type:
                    return None
                request: Request = view._request
                if request.state is not running:
                    if request.state not in _QUEUED:
                        return None
                    admitted += 1
                if (num_new < 1 or num_new > request.num_tokens - request.num_computed_tokens
                        or request.replica_id != replica_id):
                    return None
                total += num_new
                append((request, num_new))
        except ValueError:  # a pair of another length
            return None
        distinct = set(map(_FIRST, entries))
        if len(distinct) != len(entries) or (preempted and not distinct.isdisjoint(preempted)):
            return None
        return entries, admitted, total

    def _scheduled(self, pairs: Any, held: set[int], preempted: list[Request], now: float,
                   ) -> tuple[list[tuple[Request, int]], int, int]:
        """The entries as (request, tokens), how many of them are admitted and their tokens; raises
        on the first broken rule, in entry order."""
        entries: list[tuple[Request, int]] = []
        total = 0
        append = entries.append
        seen = set(preempted)
        mark = seen.add
        admitted = 0
        replica_id = self.replica.replica_id
        view_type = RequestView
        running = _RUNNING
        for pair in _as_list(pairs, "scheduled", self, now):
            if type(pair) is not tuple or len(pair) != 2:
                raise self.violation(now, f"scheduled entry {pair!r} is not a (request, new tokens) pair")
            view, num_new = pair
            if type(view) is not view_type:
                raise self.violation(
                    now, f"scheduled {view!r}, which is not a request view the engine gave the scheduler"
                )
            request: Request = view._request
            if request in seen or request.replica_id != replica_id:
                raise self._misplaced(request, preempted, now)
            mark(request)
            if request.state is not running:
                if request.state not in _QUEUED:
                    raise self.violation(now, f"scheduled {request!r}, which has ended")
                admitted += 1
            elif held and id(request) in held:
                raise self.violation(now, f"scheduled {request!r}, which is inside a suspended iteration")
            if type(num_new) is not int:
                if not is_count(num_new):
                    raise self._bad_tokens(request, num_new, now)
                num_new = int(num_new)
            if num_new < 1 or num_new > request.num_tokens - request.num_computed_tokens:
                raise self._bad_tokens(request, num_new, now)
            total += num_new
            append((request, num_new))
        return entries, admitted, total

    def _misplaced(self, request: Request, preempted: list[Request], now: float) -> PolicyContractError:
        if request.replica_id != self.replica.replica_id:
            return self.violation(now, f"scheduled {request!r}, which belongs to replica {request.replica_id}")
        again = "preempted and scheduled" if any(request is p for p in preempted) else "scheduled twice"
        return self.violation(now, f"{request!r} is {again} in one decision")

    def _bad_tokens(self, request: Request, num_new: Any, now: float) -> PolicyContractError:
        left = request.num_tokens - request.num_computed_tokens
        return self.violation(now, f"gave {request!r} {num_new!r} new tokens; it must be an integer from 1 to {left}")

    def _budgets(self, total: int, admitted: int, num_preempted: int, now: float) -> None:
        if self.max_tokens is not None and total > self.max_tokens:
            raise self.violation(now, f"scheduled {total} tokens, over its max_num_batched_tokens of {self.max_tokens}")
        if self.max_seqs is not None and admitted:
            running = len(self.replica.running) - num_preempted + admitted
            if running > self.max_seqs:
                raise self.violation(
                    now, f"would run {running} requests at once, over its max_num_seqs of {self.max_seqs}")

    def _padding(self, pairs: Any, now: float) -> list[tuple[int, int]]:
        padding = _as_list(pairs, "padding", self, now)
        if not padding:
            return padding
        for pair in padding:
            if not (isinstance(pair, tuple) and len(pair) == 2 and is_count(pair[0]) and is_count(pair[1])
                    and pair[0] >= 1 and pair[1] >= 0):
                raise self.violation(now, f"padding entry {pair!r} is not a (new tokens >= 1, context >= 0) pair")
        return padding

    def _layer_slices(self, slices: Any, entries: list[tuple[Request, int]], now: float) -> None:
        """Slices of scheduled requests only, from a scheduler that declares them, each well formed."""
        if not self.scheduler.uses_layer_slices:
            raise self.violation(now, "returned layer_slices but does not declare uses_layer_slices = True, so the "
                                 "engine would price its prompts through every layer")
        if not isinstance(slices, dict):
            raise self.violation(now, f"decision.layer_slices is {type(slices).__name__}, not a dict")
        scheduled = {request.request_id for request, _ in entries}
        for request_id, piece in slices.items():
            if request_id not in scheduled:
                raise self.violation(now, f"layer_slices names request {request_id!r}, which is not scheduled")
            if not (isinstance(piece, LayerSlice) and is_count(piece.new_tokens) and is_count(piece.context_len)
                    and is_count(piece.group) and is_count(piece.num_groups) and piece.new_tokens >= 1
                    and piece.group < piece.num_groups):
                raise self.violation(now, f"layer_slices[{request_id}] = {piece!r} is not a LayerSlice of >= 1 new "
                                     "tokens in a group 0 <= group < num_groups")

    def _resume(self, decision: ScheduleDecision, now: float) -> Iteration | None:
        view = decision.resume
        if view is None:
            return None
        iteration = view._iteration if type(view) is IterationView else None
        if iteration is None or not any(iteration is s for s in self.replica.suspended):
            raise self.violation(now, f"resume={view!r} is not one of the replica's suspended iterations")
        if decision.scheduled or decision.padding:
            raise self.violation(now, "a resumed iteration runs alone: scheduled and padding must be empty")
        return iteration


def _as_list(value: Any, field: str, checker: DecisionChecker, now: float) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise checker.violation(now, f"decision.{field} is {type(value).__name__}, not a list")
    return value  # type: ignore[return-value]
