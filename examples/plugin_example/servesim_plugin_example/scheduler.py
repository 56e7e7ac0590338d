"""Shortest prompt first: the token-budget step of vLLM with the waiting queue ordered by prefill work.

Everything but the order comes from `BudgetScheduler` (running requests first, preemption when
blocks run out, admission under the token, sequence and block budgets), so this plug-in only
overrides `order_waiting` and adds one parameter.
"""
from __future__ import annotations

from collections.abc import Iterable

from pydantic import Field

from servesim.policies.schedulers.budget import BudgetParams, BudgetScheduler
from servesim.policies.views import ReplicaView, RequestView, computed_on_admission


class ShortestPromptFirstParams(BudgetParams):
    max_wait_s: float | None = Field(
        None, gt=0,
        description="a request that has waited this long goes before shorter ones, oldest first (bounds starvation); "
        "null: never",
    )


class ShortestPromptFirstSchedulerPolicy(BudgetScheduler):
    """Admit the waiting request with the fewest prompt tokens left to compute first (cache hits count as done).

    Smith's shortest-processing-time rule ("Various optimizers for single-stage production",
    Naval Research Logistics Quarterly 3, 1956) minimises mean completion time on one machine.
    A prefill's time grows with the tokens it computes, and unlike the output length these are
    known at arrival, so ordering by them cuts mean TTFT wherever long prompts would block the
    head of an FCFS queue. With prefix caching, a request whose prompt is mostly cached has few
    tokens left and moves up, much as in SGLang's longest-prefix-match order. The price is the
    long prompts' wait under sustained load, which `max_wait_s` bounds.
    """

    Params = ShortestPromptFirstParams
    params: ShortestPromptFirstParams

    def order_waiting(self, replica: ReplicaView, now: float) -> Iterable[RequestView]:
        kv = replica.kv
        max_wait_s = self.params.max_wait_s

        def key(request: RequestView) -> tuple[int, float]:
            if max_wait_s is not None and now - request.arrival_s >= max_wait_s:
                return (0, request.arrival_s)
            return (1, request.num_tokens - computed_on_admission(request, kv))

        return sorted(replica.waiting, key=key)
