"""The reference serving engine: real forward passes, the simulator's scheduling, in real time.

Requests arrive by the wall clock; each iteration asks the same scheduler policy the simulator
uses (through `policies.create_policy` and the `policies.views` protocols, so the semantics
are the simulator's by construction), applies its preemptions (recompute: the victim frees its
blocks and goes back to the front of the queue), admits and allocates KV blocks, runs one
forward pass of the batch on the device, and emits a token for every entry that finished its
tokens, at the iteration's end. It logs every iteration's start, end and batch shape, and every
request's token times, for `profiler.fidelity` to compare with the simulator.
"""
from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from servesim.hwmodels import CostModel
from servesim.policies import SchedulerPolicy
from servesim.policies.views import is_decode, new_blocks_needed
from servesim.profiler.model import ForwardBatch, ReferenceModel
from servesim.sim.engine.bookkeeping import leave_queue, record_sampled, rejection_reason, requeue_preempted

SPIN_S = 0.002  # the last moments before an arrival are busy-waited: sleep() overshoots


@dataclass(eq=False)
class EngineRequest:
    """A request as the scheduler sees it (the `RequestView` attributes) plus its tokens and times."""

    request_id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    token_ids: list[int]
    priority: int = 0
    slo_class: str = "default"
    ttft_deadline_s: float = math.inf
    prefix_group: int | None = None
    num_computed_tokens: int = 0
    num_generated: int = 0
    num_tokens: int = 0
    num_preemptions: int = 0
    is_swapped: bool = False
    blocks: list[int] = field(default_factory=list)
    token_times_s: list[float] = field(default_factory=list)
    finish_s: float = math.nan
    rejected: str = ""

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)


@dataclass(frozen=True)
class _NoPrefix:
    num_tokens: int = 0
    num_blocks: int = 0
    num_reclaimed: int = 0


class BlockPool:
    """The KV cache's block accounting (the `KvView` protocol): a free list over the cache's blocks."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        self.num_blocks, self.block_size = num_blocks, block_size
        self.free: deque[int] = deque(range(num_blocks))

    @property
    def num_free_blocks(self) -> int:
        return len(self.free)

    def cached_prefix(self, request: Any) -> _NoPrefix:
        return _NoPrefix()

    def num_exclusive_blocks(self, request: Any) -> int:
        return request.num_blocks

    def allocate(self, request: EngineRequest, count: int) -> None:
        request.blocks.extend(self.free.popleft() for _ in range(count))

    def release(self, request: EngineRequest) -> None:
        self.free.extend(request.blocks)
        request.blocks.clear()


@dataclass
class EngineView:
    """What the scheduler reads of the engine (the `ReplicaView` protocol)."""

    kv: BlockPool
    cost_model: CostModel | None
    replica_id: int = 0
    running: list[EngineRequest] = field(default_factory=list)
    waiting: deque[EngineRequest] = field(default_factory=deque)
    suspended: tuple = ()
    recently_finished: deque[EngineRequest] = field(default_factory=lambda: deque(maxlen=1000))

    @property
    def num_outstanding(self) -> int:
        return len(self.running) + len(self.waiting)


class Entry(NamedTuple):
    """One request's part of an iteration: its new tokens, the context before them, and whether
    it decodes (decodes run after the prefill chunks, in the decode attention kernel)."""

    request: EngineRequest
    num_new: int
    context: int
    decode: bool


@dataclass(frozen=True)
class IterationRecord:
    start_s: float
    end_s: float
    new_tokens: tuple[int, ...]
    context_lens: tuple[int, ...]


class ReferenceEngine:
    """Serves requests on `model` with `scheduler`, logging iterations and token times."""

    def __init__(self, model: ReferenceModel, scheduler: SchedulerPolicy, num_blocks: int, max_model_len: int,
                 cost_model: CostModel | None = None) -> None:
        self.model, self.scheduler, self.max_model_len = model, scheduler, max_model_len
        self.view = EngineView(BlockPool(num_blocks, model.block_size), cost_model)
        self.iterations: list[IterationRecord] = []
        self._vocab = model.spec.vocab_size

    def serve(self, requests: Sequence[EngineRequest]) -> list[IterationRecord]:
        """Serve `requests` (sorted by arrival) in real time until every one finished or was rejected."""
        pending = deque(requests)
        view = self.view
        origin = time.perf_counter()
        while pending or view.running or view.waiting:
            now = time.perf_counter() - origin
            while pending and pending[0].arrival_s <= now:
                self._arrive(pending.popleft(), now)
            if not view.running and not view.waiting:
                if pending:
                    self._wait_until(origin + pending[0].arrival_s)
                continue
            self._step(origin, now)
        return self.iterations

    def _arrive(self, request: EngineRequest, now: float) -> None:
        request.num_tokens = request.prompt_tokens
        request.rejected = (rejection_reason(request.prompt_tokens, request.output_tokens, self.max_model_len,
                                             self.view.kv) or self.scheduler.admission_error(request) or "")
        if request.rejected:
            request.finish_s = now
        else:
            self.view.waiting.append(request)

    @staticmethod
    def _wait_until(deadline: float) -> None:
        remaining = deadline - time.perf_counter()
        if remaining > SPIN_S:
            time.sleep(remaining - SPIN_S)
        while time.perf_counter() < deadline:
            pass

    def _step(self, origin: float, now: float) -> None:
        view, kv = self.view, self.view.kv
        decision = self.scheduler.schedule(view, now)
        for victim in decision.preempted:
            view.running.remove(victim)
            victim.num_preemptions += 1
            victim.num_computed_tokens = 0
            kv.release(victim)
        requeue_preempted(view.waiting, decision.preempted)
        if not decision.scheduled:
            return
        entries = []
        for request, num_new in decision.scheduled:
            if request not in view.running:
                leave_queue(view.waiting, request)
                view.running.append(request)
            need = new_blocks_needed(request, num_new, kv.block_size)
            if need:
                kv.allocate(request, need)
            entries.append(Entry(request, num_new, request.num_computed_tokens, is_decode(request)))
        ordered = [e for e in entries if not e.decode] + [e for e in entries if e.decode]
        sampled = self.model.forward(self._batch(ordered))
        end = time.perf_counter() - origin
        self._apply(ordered, sampled, end)
        self.iterations.append(IterationRecord(now, end, tuple(e.num_new for e in entries),
                                               tuple(e.context for e in entries)))

    def _batch(self, entries: list[Entry]) -> ForwardBatch:
        """Flatten the entries (prefill chunks, then decodes) into the model's inputs.

        Built per entry with tensor ops, not per token in Python, so that preparing a long
        prefill costs about what preparing a decode does (the host time is fitted per entry).
        """
        device, block_size = self.model.device, self.model.block_size
        ids: list[int] = []
        positions, slots, last_rows = [], [], []
        for request, num_new, context, _ in entries:
            ids += request.token_ids[context:context + num_new]
            span = torch.arange(context, context + num_new)
            blocks = torch.tensor(request.blocks)
            positions.append(span)
            slots.append(blocks[span // block_size] * block_size + span % block_size)
            last_rows.append(len(ids) - 1)
        prefills = [e for e in entries if not e.decode]
        decodes = [e for e in entries if e.decode]

        def tables(group: list[Entry]) -> torch.Tensor:
            width = max((e.request.num_blocks for e in group), default=0)
            rows = [e.request.blocks + [0] * (width - e.request.num_blocks) for e in group]
            return torch.tensor(rows, dtype=torch.long, device=device).reshape(len(group), width)

        return ForwardBatch(
            torch.tensor(ids, dtype=torch.long, device=device), torch.cat(positions).to(device),
            torch.cat(slots).to(device), tables(prefills), tables(decodes), tuple((e.num_new, e.context) for e in prefills),
            tuple(e.context for e in decodes), torch.tensor(last_rows, dtype=torch.long, device=device),
        )

    def _apply(self, entries: list[Entry], sampled: list[int], end: float) -> None:
        view = self.view
        for (request, num_new, _, _), token in zip(entries, sampled):
            request.num_computed_tokens += num_new
            if request.num_computed_tokens < request.num_tokens:
                continue
            done = record_sampled(request, 1)
            if len(request.token_ids) < request.num_tokens:
                request.token_ids.append(token % self._vocab)
            request.token_times_s.append(end)
            if done:
                view.running.remove(request)
                view.kv.release(request)
                request.finish_s = end
                view.recently_finished.append(request)
