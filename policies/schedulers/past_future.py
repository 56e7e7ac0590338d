"""Past-Future: admit a request only if the batch's predicted peak KV memory still fits."""
from __future__ import annotations

import numpy as np
from pydantic import Field

from servesim.policies.base import PreemptionPolicy
from servesim.policies.decisions import ScheduleDecision
from servesim.policies.registry import register
from servesim.policies.schedulers.budget import BudgetParams, BudgetScheduler
from servesim.policies.views import ReplicaView, RequestView


class PastFutureParams(BudgetParams):
    quantile: float = Field(
        0.5, gt=0, lt=1,
        description="quantile of the finished lengths beyond a request's generated count that predicts its length",
    )
    min_history: int = Field(
        20, ge=1, description="finished requests needed to predict; with fewer, admit on free blocks alone (as vllm)"
    )


def predicted_lengths(history: np.ndarray, generated: np.ndarray, quantile: float) -> np.ndarray:
    """Final output length of requests that have generated `generated` tokens so far.

    The prediction is the `quantile` (inverted CDF) of the `history` lengths (sorted, not empty)
    that exceed what the request has generated: the past, conditioned on the request being still
    alive. A request that has outlived every length in the history is expected to end with its
    next token.
    """
    start = np.searchsorted(history, generated, side="right")
    count = len(history) - start
    pick = start + np.maximum(np.ceil(quantile * count).astype(np.int64) - 1, 0)
    return np.where(count > 0, history[np.minimum(pick, len(history) - 1)], generated + 1)


def peak_blocks(num_tokens: np.ndarray, remaining: np.ndarray, block_size: int) -> int:
    """The most KV blocks the batch will hold at any future step.

    Request i holds `num_tokens[i] - 1 + s` tokens after step s (prompt plus generated, and the
    token step s computes) and frees everything after step `remaining[i]`. Occupancy rises
    between finishes, so its peak is just before one: sorted by remaining length, longest first,
    the k longest are alive at step `remaining[k]`. Each request's partly filled last block is
    counted whole, so the figure is an upper bound by less than one block per request.
    """
    order = np.argsort(-remaining, kind="stable")
    held = np.cumsum(num_tokens[order] - 1 + (block_size - 1))
    alive = np.arange(1, len(order) + 1)
    return int(((held + alive * remaining[order]) // block_size).max())


@register("scheduler", "past_future")
class PastFutureSchedulerPolicy(BudgetScheduler):
    """Admits a waiting request only if the batch's predicted peak KV memory, with it, fits the pool.

    Source: Gong et al., "Past-Future Scheduler for LLM Serving under SLA Guarantees", ASPLOS
    2025 (arXiv 2507.10150), the scheduler of LightLLM. Aggressive admission (vLLM: whatever
    fits the free blocks now) ignores that running requests keep growing and pays with evictions;
    conservative admission (reserving each request's declared maximum) leaves memory idle and
    pays with queueing. Past-Future predicts, from the past (the output lengths of recently
    finished requests), each running request's final length given what it has already generated,
    and computes the future: KV occupancy at every coming step as requests grow and finish. A
    waiting request is admitted only if the peak of that future, with it, fits the KV pool.

    Differences from LightLLM: the prediction is a fixed quantile of the conditional history
    rather than random draws from it (deterministic, and one pass per decision); shared prefix
    blocks are counted once per request (an overestimate with prefix caching). With fewer than
    `min_history` finished requests there is no past to speak of, and it admits exactly as the
    aggressive scheduler does. A request is always admitted into an empty batch, whatever its
    prediction, so the replica never idles with work queued. Its admissions change as requests
    progress, so it is stable under decoding only while nothing waits.
    """

    Params = PastFutureParams
    params: PastFutureParams

    @property
    def stable_under_decode(self) -> bool:
        """With nothing waiting, the batch is every running decode, the same at every step."""
        return True

    @property
    def stable_while_waiting(self) -> bool:
        """Admission follows the predicted peak memory, which moves as the running requests decode."""
        return False

    def __init__(self, params: PastFutureParams, preemption: PreemptionPolicy, rng: np.random.Generator | None = None,
                 ) -> None:
        super().__init__(params, preemption, rng)
        self._history = np.empty(0, dtype=np.int64)
        self._history_state: tuple[int, int] = (0, -1)
        self._batch: tuple[list[int], list[int]] | None = None

    def schedule(self, replica: ReplicaView, now: float) -> ScheduleDecision:
        self._refresh_history(replica)
        self._batch = None
        return super().schedule(replica, now)

    def may_admit(self, request: RequestView, num_new: int, decision: ScheduleDecision, replica: ReplicaView,
                  now: float) -> bool:
        if len(self._history) < self.params.min_history:
            return True
        if self._batch is None:
            running = replica.running
            self._batch = ([r.num_tokens for r in running], [r.num_generated for r in running])
        tokens, generated = self._batch
        if tokens and self.predicted_peak(tokens + [request.num_tokens], generated + [request.num_generated],
                                          replica.kv.block_size) > replica.kv.num_blocks:
            return False
        tokens.append(request.num_tokens)
        generated.append(request.num_generated)
        return True

    def predicted_peak(self, num_tokens: list[int], num_generated: list[int], block_size: int) -> int:
        """Peak KV blocks of a batch with these requests, by the current history."""
        generated = np.asarray(num_generated, dtype=np.int64)
        remaining = predicted_lengths(self._history, generated, self.params.quantile) - generated
        return peak_blocks(np.asarray(num_tokens, dtype=np.int64), remaining, block_size)

    def _refresh_history(self, replica: ReplicaView) -> None:
        finished = replica.recently_finished
        state = (len(finished), finished[-1].request_id if finished else -1)
        if state != self._history_state:
            self._history_state = state
            lengths = np.fromiter((r.num_generated for r in finished), dtype=np.int64, count=len(finished))
            self._history = np.sort(lengths)

