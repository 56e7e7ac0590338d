"""Sarathi-Serve: chunked prefills piggybacked on decode-maximal, stall-free batches."""
from __future__ import annotations

from pydantic import Field, model_validator

from servesim.policies.registry import register
from servesim.policies.schedulers.budget import BudgetParams, BudgetScheduler
from servesim.policies.views import ReplicaView, RequestView, decodes_and_prefills


class SarathiParams(BudgetParams):
    max_num_batched_tokens: int = Field(
        512, ge=1, description="token budget of one iteration (Sarathi-Serve sizes it to the TBT objective)"
    )

    @model_validator(mode="after")
    def _stall_free(self) -> SarathiParams:
        if not self.chunked_prefill:
            raise ValueError("Sarathi-Serve always chunks prefills; chunked_prefill must be true")
        if self.max_num_seqs > self.max_num_batched_tokens:
            raise ValueError(
                f"max_num_seqs ({self.max_num_seqs}) must not exceed max_num_batched_tokens "
                f"({self.max_num_batched_tokens}), or some decodes would not fit and stall"
            )
        return self


@register("scheduler", "sarathi")
class SarathiSchedulerPolicy(BudgetScheduler):
    """Decodes first, then prefill chunks in the leftover token budget: decodes never stall.

    Source: Agrawal et al., "Taming Throughput-Latency Tradeoff in LLM Inference with
    Sarathi-Serve", OSDI 2024. Every iteration takes all running decodes (one token each), then
    continues ongoing prefills, then admits new prompts, each cut to the remaining budget. As
    the budget is at least the number of sequences, no decode is ever left out of an iteration
    for a prefill, so TBT is bounded by the time of one budget-sized iteration.
    """

    Params = SarathiParams
    params: SarathiParams

    @property
    def stable_under_decode(self) -> bool:
        return True

    def order_running(self, replica: ReplicaView, now: float) -> list[RequestView]:
        decodes, prefills = decodes_and_prefills(replica.running)
        return decodes + prefills
