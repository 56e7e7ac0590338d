"""LAPS: length-aware prefill scheduling with separate short and long queues."""
from __future__ import annotations

from pydantic import Field

from servesim.policies.decisions import ScheduleDecision
from servesim.policies.registry import register
from servesim.policies.schedulers.budget import BudgetParams, BudgetScheduler
from servesim.policies.views import ReplicaView, RequestView, computed_on_admission, decodes_and_prefills


class LapsParams(BudgetParams):
    short_prompt_tokens: int = Field(
        256, ge=1, description="a prefill of at most this many uncached tokens is short (LAPS: 63% of first turns are)"
    )
    window_s: float = Field(
        0.005, ge=0, description="how long the oldest short prefill waits for others to batch with"
    )
    short_batch: int = Field(32, ge=1, description="short prefills that dispatch a batch at once, without waiting")


@register("scheduler", "laps")
class LapsSchedulerPolicy(BudgetScheduler):
    """Short and long prefills in separate queues and separate iterations; shorts batched in a window.

    Source: She et al., "LAPS: A Length-Aware-Prefill LLM Serving System", MLSys 2026 (arXiv
    2601.11589). Short prefills (new turns of a conversation whose history is cached) are
    memory-bound and get stuck behind compute-bound long ones; LAPS keeps two queues by the
    number of tokens still to compute and disaggregates them in time: an iteration either runs
    a batch of short prefills or continues long ones, never both. Shorts are batched: the first
    one waits up to `window_s` for others unless `short_batch` are already waiting. Decodes ride
    along in every iteration. The CUDA-graph bucketing of short batches is not modelled.
    """

    Params = LapsParams
    params: LapsParams

    @property
    def stable_under_decode(self) -> bool:
        """With nothing waiting, the batch is every running decode, the same at every step."""
        return True

    @property
    def stable_while_waiting(self) -> bool:
        """Whether short prefills are ready depends on the time (the batching window)."""
        return False

    def schedule(self, replica: ReplicaView, now: float) -> ScheduleDecision:
        shorts, longs = self._split(replica)
        ready = bool(shorts) and (
            len(shorts) >= self.params.short_batch or now >= shorts[0].arrival_s + self.params.window_s
        )
        decision = self._step(replica, shorts, longs, ready, now)
        if ready and not decision.scheduled and not decision.preempted:
            # No short fits now (sequence slots or memory): run the rest rather than stall it.
            decision = self._step(replica, shorts, longs, False, now)
        return decision

    def _step(self, replica: ReplicaView, shorts: list[RequestView], longs: list[RequestView], ready: bool,
              now: float) -> ScheduleDecision:
        decodes, prefills = decodes_and_prefills(replica.running)
        decision = ScheduleDecision()
        running = decodes if ready else decodes + prefills
        budget, free = self._schedule_running(replica, running, decision, now)
        if decision.preempted:
            return decision
        queue = shorts[: self.params.short_batch] if ready else longs
        self._admit_waiting(replica, queue, decision, budget, free, len(replica.running), now)
        window_end = shorts[0].arrival_s + self.params.window_s if shorts else now
        if not ready and not decision.scheduled and window_end > now:
            decision.wake_at = window_end
        return decision

    def _split(self, replica: ReplicaView) -> tuple[list[RequestView], list[RequestView]]:
        shorts: list[RequestView] = []
        longs: list[RequestView] = []
        for request in replica.waiting:
            uncached = request.num_tokens - computed_on_admission(request, replica.kv)
            (shorts if uncached <= self.params.short_prompt_tokens else longs).append(request)
        return shorts, longs
