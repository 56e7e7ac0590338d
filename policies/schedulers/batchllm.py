"""BatchLLM: prefix groups scheduled together, decode-heavy first, batches limited by KV memory."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from pydantic import Field

from servesim.policies.base import LengthPredictor, PreemptionPolicy
from servesim.policies.decisions import ScheduleDecision
from servesim.policies.refs import PredictorRef
from servesim.policies.registry import register
from servesim.policies.schedulers.budget import BudgetParams, BudgetScheduler
from servesim.policies.views import (
    KvView,
    ReplicaView,
    RequestView,
    blocks_to_admit,
    computed_on_admission,
    new_blocks_needed,
)

OrderKey = tuple[float, int, float, int]


class BatchLlmParams(BudgetParams):
    max_num_seqs: int = Field(
        1024, ge=1, description="most requests running at once (large: KV memory, not a count, limits the batch)"
    )
    max_num_batched_tokens: int = Field(16384, ge=1, description="token budget of an iteration (large, for throughput)")
    kv_threshold: float = Field(
        0.9, gt=0, le=1,
        description="admit while the KV blocks in use, with the newcomer's prompt, stay within this share of the pool",
    )
    predictor: PredictorRef = Field(
        default_factory=PredictorRef,
        description="output-length predictor for the decode ratio (default oracle: offline jobs declare max tokens)",
    )


@register("scheduler", "batchllm")
class BatchLlmSchedulerPolicy(BudgetScheduler):
    """Offline batches: prefix groups together, decode-heavy first, admission bounded by KV memory.

    Source: Zheng et al., "BatchLLM: Optimizing Large Batched LLM Inference with Global Prefix
    Sharing and Throughput-oriented Token Batching", MLSys 2026 (arXiv 2412.03594). Three
    mechanisms over the token-budget step:

    - global prefix sharing: waiting requests are grouped by their shared prefix
      (`prefix_group`) and a group is admitted consecutively, so the prefix's KV is reused by
      the whole group while it is still held, instead of being evicted by LRU between
      far-apart requests of a shuffled batch. The prefix is computed once: while one request
      of a group computes its prompt and nothing of the prefix is cached yet, the others wait
      (the next group goes ahead), as BatchLLM prefills a shared prefix before its suffixes;
    - reordering by decode ratio (predicted output / prompt tokens, descending) of groups and
      of requests within a group: decode-heavy requests start early, so their long decodes run
      beside the later requests' prefill chunks. A group's ratio is that of its members
      waiting when it is first seen (an offline batch is known whole);
    - memory-centric token batching: a large token budget and no practical request limit;
      admission stops when the blocks in use, plus the newcomer's whole prompt, would exceed
      `kv_threshold` of the pool, which leaves room for the running requests' decodes to grow.

    It is meant to run with prefix caching on (without it, waiting for a group's prefix gains
    nothing). The `predictor` defaults to the oracle because offline jobs usually know or bound
    their output lengths (max tokens); a learned predictor can be named instead. BatchLLM's
    fused prefix-shared attention kernel is not modelled: shared blocks are reused, not read
    once. Keys never change with time, no prompt is being computed during a decode-only
    stretch, and a refused admission stays refused while requests only decode (memory use only
    grows), so the scheduler is stable under decoding.
    """

    Params = BatchLlmParams
    params: BatchLlmParams

    def __init__(self, params: BatchLlmParams, preemption: PreemptionPolicy, rng: np.random.Generator | None = None,
                 ) -> None:
        super().__init__(params, preemption, rng)
        self.predictor: LengthPredictor = params.predictor.build(self.rng)
        self._keys: dict[int, OrderKey] = {}
        self._group_rank: dict[int, int] = {}
        self._group_ratio: dict[int, float] = {}
        self._order: list[RequestView] = []
        self._seen: tuple[int, RequestView | None, RequestView | None] = (0, None, None)
        self._room: int | None = None
        self._computing: set[int] = set()

    @property
    def stable_under_decode(self) -> bool:
        return True

    def schedule(self, replica: ReplicaView, now: float) -> ScheduleDecision:
        self._room = None
        return super().schedule(replica, now)

    def order_waiting(self, replica: ReplicaView, now: float) -> Iterator[RequestView]:
        """Groups by decode ratio, each group's requests together, by their own ratio; minus the
        requests waiting for their group's prefix to be computed."""
        prefilling = (r for r in replica.running if not r.num_generated)
        self._computing = {r.prefix_group for r in prefilling if r.prefix_group is not None}
        kv = replica.kv
        return (r for r in self._sorted(replica, now) if not self._waits_for_prefix(r, kv))

    def _sorted(self, replica: ReplicaView, now: float) -> list[RequestView]:
        """The waiting queue in key order.

        The waiting queue changes only by arrivals at its back, preempted requests at its front,
        and removals; so an unchanged length, first and last request mean an unchanged queue,
        and the previous order is returned as is. Otherwise the previous order minus the
        requests that left is still sorted; newcomers, if any, are appended and the list sorted
        again (Python's sort merges sorted runs in linear time). Keys are computed once per request.
        """
        waiting = replica.waiting
        if not self._unchanged(waiting):
            self._seen = (len(waiting), waiting[0] if waiting else None, waiting[-1] if waiting else None)
            self._order = self._reorder(waiting, replica, now)
        return self._order

    def _waits_for_prefix(self, request: RequestView, kv: KvView) -> bool:
        """Another request of its group is computing the shared prefix, of which nothing is cached."""
        return (request.prefix_group in self._computing and not request.num_computed_tokens
                and not request.is_swapped and not kv.cached_prefix(request).num_blocks)

    def may_admit(self, request: RequestView, num_new: int, decision: ScheduleDecision, replica: ReplicaView,
                  now: float) -> bool:
        kv = replica.kv
        if self._room is None:
            growth = sum(new_blocks_needed(r, n, kv.block_size) for r, n in decision.scheduled)
            in_use = kv.num_blocks - kv.num_free_blocks + growth
            self._room = int(self.params.kv_threshold * kv.num_blocks) - in_use
        prompt = blocks_to_admit(request, request.num_tokens - computed_on_admission(request, kv), kv)
        if prompt > self._room and (replica.running or decision.scheduled):
            return False
        self._room -= prompt
        if request.prefix_group is not None and not request.num_generated:
            self._computing.add(request.prefix_group)
        return True

    def _unchanged(self, waiting: Sequence[RequestView]) -> bool:
        """Same length, same first and same last request as when the order was last computed."""
        length, first, last = self._seen
        if len(waiting) != length:
            return False
        return not waiting or (waiting[0] is first and waiting[-1] is last)

    def _reorder(self, waiting: Sequence[RequestView], replica: ReplicaView, now: float) -> list[RequestView]:
        present = set(map(id, waiting))
        kept = [r for r in self._order if id(r) in present]
        if len(kept) < len(waiting):
            known = set(map(id, kept))
            arrived = [r for r in waiting if id(r) not in known]
            self._add_keys([r for r in arrived if r.request_id not in self._keys], replica, now)
            keys = self._keys
            kept += arrived
            kept.sort(key=lambda r: keys[r.request_id])
        return kept

    def _add_keys(self, requests: list[RequestView], replica: ReplicaView, now: float) -> None:
        """Sort keys of requests never seen before; a group's ratio is fixed when it is first seen."""
        outputs = [self.predictor.predict(r, replica, now) for r in requests]
        totals: dict[int, list[float]] = {}
        for request, output in zip(requests, outputs, strict=True):
            group = request.prefix_group
            if group is not None and group not in self._group_rank:
                total = totals.setdefault(group, [0.0, 0.0])
                total[0] += output
                total[1] += request.prompt_tokens
        for group, (output, prompt) in totals.items():
            self._group_rank[group] = len(self._group_rank)
            self._group_ratio[group] = output / prompt
        for request, output in zip(requests, outputs, strict=True):
            ratio = output / request.prompt_tokens
            group = request.prefix_group
            if group is None:  # a group of its own
                group_ratio, rank = ratio, -1 - request.request_id
            else:
                group_ratio, rank = self._group_ratio[group], self._group_rank[group]
            self._keys[request.request_id] = (-group_ratio, rank, -ratio, request.request_id)
