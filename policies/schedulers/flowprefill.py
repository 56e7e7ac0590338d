"""FlowPrefill: operator-level preemption of prefills, decided on events rather than per chunk."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field

from servesim.hwmodels import BatchShape
from servesim.policies.decisions import ScheduleDecision
from servesim.policies.registry import register
from servesim.policies.schedulers.budget import BudgetParams, BudgetScheduler
from servesim.policies.views import IterationView, ReplicaView, RequestView, computed_on_admission, is_decode


class FlowPrefillParams(BudgetParams):
    max_num_batched_tokens: int = Field(
        16384, ge=1, description="token budget of one iteration: prompts run whole up to it (no small fixed chunks)"
    )
    urgency: Literal["deadline", "priority"] = Field(
        "deadline",
        description="what makes a request more urgent: an earlier TTFT deadline, or a smaller priority value",
    )
    slo_aware_batching: bool = Field(
        True, description="admit a prompt only if the iteration still ends before the TTFT deadlines it could meet"
    )


@register("scheduler", "flowprefill")
class FlowPrefillSchedulerPolicy(BudgetScheduler):
    """Prefills run whole and are preempted at operator boundaries when a more urgent request arrives.

    Source: Hsieh et al., "FlowPrefill: Decoupling Preemption from Prefill Scheduling Granularity
    to Mitigate Head-of-Line Blocking in LLM Serving", arXiv 2602.16603, 2026. Chunked prefill
    ties responsiveness to chunk size (small chunks respond fast but run inefficiently);
    FlowPrefill runs prompts unchunked and makes them preemptible at every operator boundary.
    Scheduling is event-driven: an arrival that is more urgent than every prefill in the
    iteration in flight interrupts it; the iteration stops at its next operator boundary and is
    suspended with its work kept; the urgent request runs; the suspended iteration resumes,
    without recomputation, when nothing waiting is more urgent. Waiting requests are admitted
    most urgent first (earliest TTFT deadline, or priority), and, in the spirit of the paper's
    TTFT-goodput optimiser, a prompt joins an iteration only if the iteration still ends before
    the deadlines of the prompts in it that would otherwise be met (`slo_aware_batching`).
    """

    Params = FlowPrefillParams
    params: FlowPrefillParams

    @property
    def stable_under_decode(self) -> bool:
        """With nothing waiting, the batch is every running decode, the same at every step."""
        return True

    @property
    def stable_while_waiting(self) -> bool:
        """Deadline-aware admission compares iteration times that grow as the running requests decode."""
        return False

    def urgency(self, request: RequestView) -> Any:
        if self.params.urgency == "deadline":
            return (request.ttft_deadline_s, request.arrival_s)
        return (request.priority, request.arrival_s)

    def order_waiting(self, replica: ReplicaView, now: float) -> Iterable[RequestView]:
        return sorted(replica.waiting, key=self.urgency)

    def schedule(self, replica: ReplicaView, now: float) -> ScheduleDecision:
        if not replica.suspended:
            return super().schedule(replica, now)
        suspended = min(replica.suspended, key=self._iteration_urgency)
        head = min(replica.waiting, key=self.urgency, default=None)
        if head is None or not self.urgency(head) < self._iteration_urgency(suspended):
            return ScheduleDecision(resume=suspended)
        decision = super().schedule(replica, now)
        if not decision.scheduled and not decision.preempted:
            return ScheduleDecision(resume=suspended)  # the urgent ones do not fit now: finish what was cut short
        return decision

    def may_admit(self, request: RequestView, num_new: int, decision: ScheduleDecision, replica: ReplicaView,
                  now: float) -> bool:
        """Never let a prompt push the iteration past a deadline that its batch would otherwise meet."""
        if not self.params.slo_aware_batching:
            return True
        prefills = [r for r, _ in decision.scheduled if not is_decode(r)]
        if not prefills:
            return True
        without = now + replica.cost_model.iteration_time(_shape(decision.scheduled, replica))
        met = [r.ttft_deadline_s for r in prefills if r.ttft_deadline_s >= without]
        if not met:
            return True
        with_it = now + replica.cost_model.iteration_time(_shape([*decision.scheduled, (request, num_new)], replica))
        return with_it <= min(met)

    def interrupt(self, in_flight: IterationView, arrival: RequestView, replica: ReplicaView, now: float) -> bool:
        prefills = [request for request, _ in in_flight.entries if not is_decode(request)]
        return bool(prefills) and self.urgency(arrival) < min(self.urgency(r) for r in prefills)

    def _iteration_urgency(self, iteration: IterationView) -> Any:
        return min(self.urgency(request) for request, _ in iteration.entries)


def _shape(entries: list[tuple[RequestView, int]], replica: ReplicaView) -> BatchShape:
    return BatchShape(tuple(n for _, n in entries), tuple(computed_on_admission(r, replica.kv) for r, _ in entries))
