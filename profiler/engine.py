"""The reference serving engine: real forward passes, the simulator's scheduling, in real time.

Requests arrive by the wall clock; each iteration asks the same scheduler policy the simulator
uses (through `policies.create_policy`), hands it the same read-only views (`sim.engine.views`)
and checks its decision with the simulator's `DecisionChecker`. The engine serves the
simulator's own `Request`s from its `BlockPool` and applies the decision with the simulator's
bookkeeping (`sim.engine.bookkeeping`): preemptions recompute (the victim frees its blocks and
goes back to the front of the queue; this engine has no host memory to swap to), admissions
allocate KV blocks, then one forward pass of the batch runs on the device and every entry that
finished its tokens emits one at the iteration's end. It logs every iteration's start, end and
batch shape, and every request's token times, for `profiler.fidelity` to compare with the
simulator.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, cast

import torch

from servesim.hwmodels import CostModel
from servesim.policies import SchedulerPolicy
from servesim.policies.views import is_decode, new_blocks_needed
from servesim.profiler.model import ForwardBatch, ReferenceModel
from servesim.sim.engine.bookkeeping import (
    admit,
    allocate,
    arrival_rejection,
    checked_schedule,
    preempt,
    record_sampled,
    retire,
)
from servesim.sim.engine.decision_check import DecisionChecker
from servesim.sim.engine.kv_memory import BlockPool
from servesim.sim.engine.replica import RECENTLY_FINISHED
from servesim.sim.engine.request import Request, RequestState
from servesim.sim.engine.views import ReplicaView

SPIN_S = 0.002  # the last moments before an arrival are busy-waited: sleep() overshoots


class EngineRequest(Request):
    """A simulator request plus what real serving adds: its token ids (the prompt, then each
    sampled token) and the wall time of each token."""

    __slots__ = ("token_ids", "token_times_s")

    def __init__(self, request_id: int, arrival_s: float, prompt_tokens: int, output_tokens: int,
                 token_ids: list[int] | None = None) -> None:
        super().__init__(request_id, arrival_s, prompt_tokens, output_tokens)
        self.token_ids: list[int] = [] if token_ids is None else token_ids
        self.token_times_s: list[float] = []


class Entry(NamedTuple):
    """One request's part of an iteration: its new tokens, the context before them, whether it
    decodes (decodes run after the prefill chunks, in the decode attention kernel), its KV blocks."""

    request: EngineRequest
    num_new: int
    context: int
    decode: bool
    blocks: list[int]


@dataclass(frozen=True)
class IterationRecord:
    start_s: float
    end_s: float
    new_tokens: tuple[int, ...]
    context_lens: tuple[int, ...]


class ReferenceEngine:
    """Serves requests on `model` with `scheduler`, logging iterations and token times.

    It is a replica to the scheduler: `view` (a `ReplicaView`) shows its queues and KV pool. A
    decision's padding entries (static batching's) are not run, and an empty decision is followed
    by the next at once rather than at its `wake_at`."""

    replica_id = 0
    suspended: tuple = ()
    """No iteration is ever interrupted here."""

    def __init__(self, model: ReferenceModel, scheduler: SchedulerPolicy, num_blocks: int, max_model_len: int,
                 cost_model: CostModel | None = None) -> None:
        self.model, self.scheduler, self.max_model_len, self.cost_model = model, scheduler, max_model_len, cost_model
        self.kv = BlockPool(num_blocks, model.block_size)
        # Typed as the shared bookkeeping moves them; every request in them is an EngineRequest.
        self.running: list[Request] = []
        self.waiting: deque[Request] = deque()
        self.recently_finished: deque[Request] = deque(maxlen=RECENTLY_FINISHED)
        self.view = ReplicaView(self)
        self._checker = DecisionChecker(self, scheduler)  # type: ignore[arg-type]  # a replica to the checker
        self.iterations: list[IterationRecord] = []
        self._vocab = model.spec.vocab_size

    @property
    def num_outstanding(self) -> int:
        return len(self.running) + len(self.waiting)

    def serve(self, requests: Sequence[EngineRequest]) -> list[IterationRecord]:
        """Serve `requests` (sorted by arrival) in real time until every one finished or was rejected."""
        pending = deque(requests)
        origin = time.perf_counter()
        while pending or self.running or self.waiting:
            now = time.perf_counter() - origin
            while pending and pending[0].arrival_s <= now:
                self._arrive(pending.popleft(), now)
            if not self.running and not self.waiting:
                if pending:
                    self._wait_until(origin + pending[0].arrival_s)
                continue
            self._step(origin, now)
        return self.iterations

    def _arrive(self, request: EngineRequest, now: float) -> None:
        request.replica_id = self.replica_id
        request.reject_reason = arrival_rejection(request, self.max_model_len, self.kv, self.scheduler, now)
        if request.reject_reason:
            request.state = RequestState.REJECTED
            request.finish_s = now
        else:
            self.waiting.append(request)

    @staticmethod
    def _wait_until(deadline: float) -> None:
        remaining = deadline - time.perf_counter()
        if remaining > SPIN_S:
            time.sleep(remaining - SPIN_S)
        while time.perf_counter() < deadline:
            pass

    def _step(self, origin: float, now: float) -> None:
        kv = self.kv
        decision = checked_schedule(self.scheduler, self.view, self._checker, now)
        preempt(decision.preempted, self.running, self.waiting, kv)
        if not decision.entries:
            return
        entries = []
        for scheduled, num_new in decision.entries:
            request = cast(EngineRequest, scheduled)  # the checker passes only this engine's requests
            if request.state is not RequestState.RUNNING:
                admit(request, self.waiting, self.running, now)
            need = new_blocks_needed(request, num_new, kv.block_size)
            if need:
                allocate(request, need, kv, self.scheduler, now)
            entries.append(Entry(request, num_new, request.num_computed_tokens, is_decode(request),
                                 kv.blocks_of(request.request_id)))
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
        for request, num_new, context, _, blocks in entries:
            ids += request.token_ids[context:context + num_new]
            span = torch.arange(context, context + num_new)
            positions.append(span)
            slots.append(torch.tensor(blocks)[span // block_size] * block_size + span % block_size)
            last_rows.append(len(ids) - 1)
        prefills = [e for e in entries if not e.decode]
        decodes = [e for e in entries if e.decode]

        def tables(group: list[Entry]) -> torch.Tensor:
            width = max((len(e.blocks) for e in group), default=0)
            rows = [e.blocks + [0] * (width - len(e.blocks)) for e in group]
            return torch.tensor(rows, dtype=torch.long, device=device).reshape(len(group), width)

        return ForwardBatch(
            torch.tensor(ids, dtype=torch.long, device=device), torch.cat(positions).to(device),
            torch.cat(slots).to(device), tables(prefills), tables(decodes),
            tuple((e.num_new, e.context) for e in prefills), tuple(e.context for e in decodes),
            torch.tensor(last_rows, dtype=torch.long, device=device),
        )

    def _apply(self, entries: list[Entry], sampled: list[int], end: float) -> None:
        for (request, num_new, _, _, _), token in zip(entries, sampled, strict=True):
            request.num_computed_tokens += num_new
            if request.num_computed_tokens < request.num_tokens:
                continue
            done = record_sampled(request, 1)
            if len(request.token_ids) < request.num_tokens:
                request.token_ids.append(token % self._vocab)
            request.token_times_s.append(end)
            if done:
                retire(request, self.running, self.kv, self.recently_finished, end)
