"""The built-in split policies: a static SM partition, and Nexus's proactive one."""
from __future__ import annotations

import numpy as np
from pydantic import Field

from servesim.policies.base import PolicyParams
from servesim.policies.intra_gpu import SplitPolicy, SplitView
from servesim.policies.registry import register


class StaticSplitParams(PolicyParams):
    prefill_share: float = Field(0.6, gt=0, lt=1,
                                 description="fixed share of the SMs for prefill; decode gets the rest")


@register("split", "static")
class StaticSplitPolicy(SplitPolicy):
    """A fixed SM partition, as with a static green-context or MPS split: an idle phase's SMs stay idle."""

    Params = StaticSplitParams
    params: StaticSplitParams

    def prefill_share(self, split: SplitView, now: float) -> float:
        return self.params.prefill_share


class ProactiveSplitParams(PolicyParams):
    share_step: float = Field(0.05, gt=0, le=0.5, description="granularity of the shares searched")
    ttft_budget_s: float = Field(
        1.0, gt=0, description="prefill progress: the queued prompt tokens must be computable within this time at "
        "the chosen share"
    )
    tbt_tolerance: float = Field(
        0.2, ge=0, description="shares whose predicted decode time is within this fraction of the best count as "
        "equally good: the largest prefill share among them is chosen, and the current share is kept while it is "
        "one of them (hysteresis)"
    )


@register("split", "proactive")
class ProactiveSplitPolicy(SplitPolicy):
    """Nexus's proactive split: re-partition every iteration from the predicted latency of both phases.

    Source: Shi et al., "Proactive Intra-GPU Disaggregation of Prefill and Decode in LLM Serving"
    (Nexus), arXiv 2507.06608. From the cost model's prediction of both batches at every share
    on a grid, choose the share that minimises the predicted decode iteration time (TBT) subject
    to prefill progress: the queued prompt tokens, at the prefill batch's predicted rate, finish
    within `ttft_budget_s`. If no share keeps that pace, the prefill gets the share that drains
    the queue fastest. Among shares within `tbt_tolerance` of the best TBT the prefill gets the
    largest, and the current share stays while it is among them, so that the split does not
    flap. An idle phase gets no SMs.
    """

    Params = ProactiveSplitParams
    params: ProactiveSplitParams

    def prefill_share(self, split: SplitView, now: float) -> float:
        if not split.prefill_tokens:
            return 0.0
        if not split.num_decodes:
            return 1.0
        grid = self._grid()
        current = split.prefill_share
        keep_candidate = 0 < current < 1
        prefill_s, decode_s = split.predict(np.append(grid, current) if keep_candidate else grid)
        keeps_pace = split.queued_prefill_tokens * prefill_s / split.prefill_tokens <= self.params.ttft_budget_s
        on_grid = slice(0, len(grid))
        if not keeps_pace[on_grid].any():
            return float(grid[int(np.argmin(prefill_s[on_grid]))])
        good_s = decode_s[on_grid][keeps_pace[on_grid]].min() * (1 + self.params.tbt_tolerance)
        if keep_candidate and keeps_pace[-1] and decode_s[-1] <= good_s:
            return current
        return float(grid[keeps_pace[on_grid] & (decode_s[on_grid] <= good_s)].max())

    def _grid(self) -> np.ndarray:
        """Prefill shares 1/n, 2/n, ..., (n-1)/n with n = round(1 / share_step) (0.5 when n < 2)."""
        count = int(round(1 / self.params.share_step))
        return np.array([k / count for k in range(1, count)]) if count > 1 else np.array([0.5])
