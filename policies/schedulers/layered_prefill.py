"""Layered prefill: a prompt advances one group of layers per iteration, decodes every layer.

Source: Lee et al. 2025, "From Tokens to Layers: Redefining Stall-Free Scheduling for LLM Serving
with Layered Prefill" (arXiv 2510.08055). Chunked prefill cuts a prompt along its tokens, so a
MoE model reads every expert's weights once per chunk; layered prefill cuts the model into
contiguous layer groups instead and runs the whole prompt through one group per iteration, so
each expert's weights are read once per prompt, while every iteration still runs all the
decodes through all layers (no decode stalls).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field, model_validator

from servesim.hwmodels.shapes import LayerSlice
from servesim.policies.base import PreemptionPolicy
from servesim.policies.decisions import ScheduleDecision
from servesim.policies.registry import register
from servesim.policies.schedulers.budget import BudgetParams, BudgetScheduler
from servesim.policies.views import ReplicaView, RequestView, blocks_to_admit, computed_on_admission, new_blocks_needed


class LayeredPrefillParams(BudgetParams):
    num_layer_groups: int = Field(
        4, ge=1, description="contiguous layer groups a prompt advances through, one per iteration (at most the "
        "model's layers)"
    )
    chunked_prefill: bool = Field(False, description="always false: prompts are cut along layers, not tokens")

    @model_validator(mode="after")
    def _not_chunked(self) -> LayeredPrefillParams:
        if self.chunked_prefill:
            raise ValueError("layered prefill cuts prompts into layer groups, not token chunks; chunked_prefill must "
                             "be false")
        return self


@dataclass(slots=True)
class _Prompt:
    """The prompt in flight: its whole work (the slice's tokens and context) and the next group."""

    request_id: int
    new_tokens: int
    context_len: int
    next_group: int


@register("scheduler", "layered_prefill")
class LayeredPrefillSchedulerPolicy(BudgetScheduler):
    """Decodes every iteration; one prompt at a time, one layer group per iteration (FCFS).

    Each iteration serves the running decodes first (preempting the newest when blocks run
    out, never the prompt in flight), then moves the prompt in flight to its next layer group,
    or admits the head of the queue when its whole prompt fits in the free blocks and, with the
    decodes, in `max_num_batched_tokens`. The engine prices the prompt through its group's layers
    only (`LayerSlice`). Its tokens count as computed when its first group runs, all but one per
    later group, so its KV blocks are taken on admission and its first token comes with its last
    group. A prompt of fewer tokens than groups gets one group per token.
    """

    Params = LayeredPrefillParams
    params: LayeredPrefillParams
    uses_layer_slices = True

    def __init__(self, params: LayeredPrefillParams, preemption: PreemptionPolicy, rng: Any = None) -> None:
        super().__init__(params, preemption, rng)
        self._prompt: _Prompt | None = None

    @property
    def stable_under_decode(self) -> bool:
        return True

    def schedule(self, replica: ReplicaView, now: float) -> ScheduleDecision:
        decision = ScheduleDecision()
        prompt = self._in_flight(replica)
        running = [r for r in self.order_running(replica, now) if prompt is None or r is not prompt]
        budget, free = self._schedule_running(replica, running, decision, now)
        if prompt is not None:
            self._advance(prompt, decision, free, replica.kv.block_size)
        elif replica.waiting and not decision.preempted:
            self._start(replica, decision, budget, free, len(running), now)
        return decision

    def _in_flight(self, replica: ReplicaView) -> RequestView | None:
        """The running request whose prompt is mid-way through its groups, if any."""
        if self._prompt is None:
            return None
        request_id = self._prompt.request_id
        found = next((r for r in replica.running if r.request_id == request_id), None)
        if found is None:
            self._prompt = None
        return found

    def _advance(self, request: RequestView, decision: ScheduleDecision, free: int, block_size: int) -> None:
        """The prompt's next group: one more token (its block if needed, else it waits an iteration)."""
        prompt = self._prompt
        assert prompt is not None  # _in_flight found it
        if new_blocks_needed(request, 1, block_size) > free:
            return
        self._schedule_group(request, 1, prompt, decision)

    def _start(self, replica: ReplicaView, decision: ScheduleDecision, budget: int, free: int, num_running: int,
               now: float) -> None:
        """Admit the head of the queue if its whole prompt fits; run its first group."""
        request = next(iter(self.order_waiting(replica, now)), None)
        if request is None or num_running >= self.params.max_num_seqs:
            return
        kv = replica.kv
        context = computed_on_admission(request, kv)
        num_new = request.num_tokens - context
        if num_new > budget or blocks_to_admit(request, num_new, kv) > free:
            return
        groups = min(self.params.num_layer_groups, num_new)
        prompt = _Prompt(request.request_id, num_new, context, 0)
        first = num_new - (groups - 1)
        self._prompt = prompt if groups > 1 else None
        decision.layer_slices[request.request_id] = LayerSlice(num_new, context, 0, groups)
        decision.scheduled.append((request, first))
        prompt.next_group = 1

    def _schedule_group(self, request: RequestView, num_new: int, prompt: _Prompt,
                        decision: ScheduleDecision) -> None:
        groups = min(self.params.num_layer_groups, prompt.new_tokens)
        decision.layer_slices[request.request_id] = LayerSlice(prompt.new_tokens, prompt.context_len,
                                                               prompt.next_group, groups)
        decision.scheduled.append((request, num_new))
        prompt.next_group += 1
        if prompt.next_group == groups:
            self._prompt = None
