"""Data parallelism with expert parallelism across the ranks (vLLM `--data-parallel-size N
--enable-expert-parallel`): the composition of two cost models.

In vLLM each DP rank runs attention (and everything else outside the MoE layers) on its own
requests, while every MoE layer is expert-parallel over all N x TP devices: the tokens of all
ranks are gathered, each device runs its 1/EP of the experts on them, and the results go back.
The ranks step in lockstep (an idle rank runs a dummy batch, and batches are padded to the
largest rank's token count), so a rank's MoE layers see about N times its own tokens.

`DataParallelExpertCostModel` prices a rank's iteration as `local` (the rank's own plan, every
expert held: attention, dense layers, router, sampling) with its `moe_experts` time replaced by
`experts`' MoE time for N x the rank's tokens, where `experts` is the same model at EP = N x TP
(the measured expert kernels at that EP). The exchange is vLLM's default all2all backend,
`allgather_reducescatter`: per MoE layer an all-gather of the hidden states of all gathered tokens
and a reduce-scatter of their outputs, each moving the gathered tokens' hidden states (no top-k
copies: tokens are not dispatched per expert). `experts` prices its `ep_all_to_all` (two per MoE
layer, from the measured NCCL all-to-all) at top-k x hidden x bytes / EP per token, so it is asked
for EP / top-k as many tokens to price these two exchanges at their bytes. What it leaves out:
ranks are assumed to carry equal batches (the router balances them), so a rank never waits for a
busier one, and the DP synchronisation per step is not priced; the lockstep group
(`servesim.sim.engine.dp_group`) corrects a step for unequal batches with `regathered_s` and
`exchanged_tokens`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from servesim.hwmodels.cost_model import CostModel, IterationCost, OperatorTime
from servesim.hwmodels.shapes import BatchShape

EXPERT_OPERATORS = ("moe_experts", "ep_all_to_all")


def exchanged_tokens(shares: Sequence[int]) -> int:
    """The gathered tokens that, in equal shares, take as long to all-gather (or reduce-scatter)
    as the ranks' unequal `shares`.

    The rank with the fewest tokens must receive every other rank's through its own link (in a
    reduce-scatter, send them), sum - min tokens, where equal shares put (N - 1) / N of the sum
    there; so a 2,048-token prefill beside 100 decodes exchanges as long as 2 x 2,048 tokens do,
    not 2,148."""
    ranks = len(shares)
    if ranks < 2:
        return sum(shares)
    return round((sum(shares) - min(shares)) * ranks / (ranks - 1))


class DataParallelExpertCostModel(CostModel):
    """`local`'s time with the MoE experts priced by `experts` at `ranks` x the batch's tokens."""

    def __init__(self, local: CostModel, experts: CostModel, ranks: int, ep: int, experts_per_token: int) -> None:
        self.local = local
        self.experts = experts
        self.ranks = ranks
        self.exchange_tokens_per_token = ep / experts_per_token
        self._swap_memo: dict[int, tuple[float, float, float]] = {}
        self._experts_memo: dict[int, float] = {}
        self._exchange_memo: dict[int, float] = {}

    def _swap(self, num_tokens: int) -> tuple[float, float, float]:
        """(local moe_experts s, expert-parallel moe_experts s, all-to-all s) for a rank's `num_tokens`.

        MoE operators depend on the token count only, so a fresh prefill of that size prices them."""
        found = self._swap_memo.get(num_tokens)
        if found is None:
            mine = self.local.breakdown(BatchShape((num_tokens,), (0,))).by_operator()
            gathered = num_tokens * self.ranks
            found = (mine.get("moe_experts", 0.0), self._experts_s(gathered), self._exchange_s(gathered))
            self._swap_memo[num_tokens] = found
        return found

    def _experts_s(self, tokens: int) -> float:
        """Expert-parallel moe_experts seconds when the ranks together gather `tokens`."""
        found = self._experts_memo.get(tokens)
        if found is None:
            found = self.experts.breakdown(BatchShape((tokens,), (0,))).by_operator().get("moe_experts", 0.0)
            self._experts_memo[tokens] = found
        return found

    def _exchange_s(self, tokens: int) -> float:
        """All-gather plus reduce-scatter seconds when the ranks hold equal shares of `tokens`."""
        found = self._exchange_memo.get(tokens)
        if found is None:
            as_exchanged = max(1, round(tokens * self.exchange_tokens_per_token))
            exchange = self.experts.breakdown(BatchShape((as_exchanged,), (0,))).by_operator()
            found = exchange.get("ep_all_to_all", 0.0)
            self._exchange_memo[tokens] = found
        return found

    def regathered_s(self, num_tokens: int, gathered_tokens: int, exchanged_tokens: int | None = None) -> float:
        """Seconds to add to `iteration_time` of a rank's `num_tokens` batch when the ranks gather
        `gathered_tokens` in all rather than `ranks` x `num_tokens` (unequal, unpadded batches), and
        exchange them as long as equal shares of `exchanged_tokens` take (`exchanged_tokens`;
        default: `gathered_tokens`)."""
        exchanged = gathered_tokens if exchanged_tokens is None else exchanged_tokens
        assumed_tokens = num_tokens * self.ranks
        if num_tokens < 1 or gathered_tokens == exchanged == assumed_tokens:
            return 0.0
        _, assumed, assumed_exchange = self._swap(num_tokens)
        return self._experts_s(gathered_tokens) + self._exchange_s(exchanged) - assumed - assumed_exchange

    def _delta(self, num_tokens: int) -> float:
        if num_tokens < 1:
            return 0.0
        mine, gathered, all_to_all = self._swap(num_tokens)
        return gathered + all_to_all - mine

    def breakdown(self, batch: BatchShape) -> IterationCost:
        if batch.num_tokens < 1:
            return self.local.breakdown(batch)
        mine, gathered, all_to_all = self._swap(batch.num_tokens)
        operators = []
        for op in self.local.breakdown(batch).operators:
            if op.name == "moe_experts":
                operators.append(OperatorTime("moe_experts", op.calls, gathered / op.calls))
                operators.append(OperatorTime("ep_all_to_all", op.calls, all_to_all / op.calls))
            else:
                operators.append(op)
        return IterationCost(tuple(operators))

    def iteration_time(self, batch: BatchShape) -> float:
        return self.local.iteration_time(batch) + self._delta(batch.num_tokens)

    def stretch_of_decodes_by_sum(self, num_decodes: int, context_sum: int, shortest: int, num_steps: int,
                                  ) -> np.ndarray | None:
        local = self.local.stretch_of_decodes_by_sum(num_decodes, context_sum, shortest, num_steps)
        return None if local is None else local + self._delta(num_decodes)

    def decodes_and_chunk_by_sum(self, num_decodes: int, decode_context_sum: int, chunk_tokens: int,
                                 chunk_context: int) -> float | None:
        local = self.local.decodes_and_chunk_by_sum(num_decodes, decode_context_sum, chunk_tokens, chunk_context)
        return None if local is None else local + self._delta(num_decodes + chunk_tokens)

    def describe(self) -> dict[str, Any]:
        experts = self.experts.describe()
        return {**self.local.describe(), "expert_parallel_across_replicas": {
            "ranks": self.ranks, "ep": experts.get("ep"),
            "experts_priced_by": experts.get("tables", experts.get("kind"))}}
