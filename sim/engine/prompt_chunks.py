"""Fast-forward through a chunked prompt: the steps that finish one prompt beside running decodes.

Chunked prefill's usual step is the running decodes followed by one request still computing
its prompt (`vllm` and `sarathi`, with nothing waiting). Which batch comes next is then known
(`sim.engine.trusted.known_prompt_chunk`): each decode computes one more token and the prompt
its next chunk (what the token budget leaves), until the prompt is done or a decode finishes.
Stepping would pass over every decode three times a step (the known batch, its blocks, its
tokens). Here each step still ends at its own time, so that an arrival, the KV pool and the
replica's samples are seen as stepping shows them, but only the prompt and the decodes that
cross a block boundary are touched at a step; the decodes' tokens are applied once at the end,
as a decode stretch applies them (`sim.engine.stretch`). That is exact only while nobody reads
the decodes' progress in between: a router reading progress, an interruptible scheduler, a
prefill pool's hand-off and the other hooks are stepped as before.
"""
from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from servesim.hwmodels import BatchShape, CostModel
from servesim.policies.views import blocks_for, is_decode
from servesim.sim.engine.bookkeeping import allocate, record_decoded

if TYPE_CHECKING:
    from servesim.sim.engine.replica import PreparedStep, Replica
    from servesim.sim.engine.request import Request


class _Plan:
    """What a run through a prompt's chunks knows before it starts (a plain class: mypyc compiles
    its `__init__`, not a dataclass's)."""

    __slots__ = ("decodes", "contexts", "prompt", "chunk", "num_steps", "crossings")

    def __init__(self, decodes: list[Request], contexts: list[int], prompt: Request, chunk: int, num_steps: int,
                 crossings: dict[int, list[Request]]) -> None:
        self.decodes = decodes
        self.contexts = contexts
        """Each decode's computed tokens as the first step starts."""
        self.prompt = prompt
        self.chunk = chunk
        """Tokens of each later chunk of the prompt (the last may be fewer: what it has left)."""
        self.num_steps = num_steps
        """Steps until the prompt is done or a decode finishes, the first included."""
        self.crossings = crossings
        """By step, the decodes that need a new block as it starts."""


def run_prompt_chunks(replica: Replica, step: PreparedStep) -> Generator[simpy.Event, Any, int]:
    """Run `step` and the known steps after it while they are decodes beside one prompt's
    chunks; returns the iterations run (0: not such a step, run it alone)."""
    plan = _plan(replica, step)
    if plan is None:
        return 0
    decodes, prompt, chunk = plan.decodes, plan.prompt, plan.chunk
    env = replica.env
    kv = replica.kv
    block_size = kv.block_size
    cost_model = replica.cost_model
    metrics = replica.metrics
    num_decodes = len(decodes)
    decode_sum = sum(plan.contexts)
    metered = replica.expert_meter is not None
    shape: BatchShape | None = step.shape
    num_new = step.entries[-1][1]
    priced = _priced_by_sums(cost_model, num_decodes, decode_sum, num_new, prompt.num_computed_tokens)
    seconds = cost_model.iteration_time(step.shape) if priced is None else priced
    began = env.now
    ends: list[float] = []
    done = 0
    while True:
        yield env.timeout(seconds)
        now = env.now
        ends.append(now)
        done += 1
        replica.outstanding_tokens -= num_decodes + num_new
        if metrics.record_iterations:
            _record(replica, prompt, num_decodes, num_new, began, now)
        if shape is not None:
            replica.meter_experts(shape)
        if done == plan.num_steps or replica.has_arrivals():
            break
        left = prompt.num_tokens - prompt.num_computed_tokens - num_new
        next_new = left if left < chunk else chunk
        prompt_need = blocks_for(prompt.num_computed_tokens + num_new + next_new, block_size) - prompt.num_blocks
        crossing = plan.crossings.get(done, ())
        if len(crossing) + max(prompt_need, 0) > kv.num_free_blocks:
            break  # the scheduler would preempt: it decides after this step
        prompt.num_computed_tokens += num_new
        for request in crossing:
            kv.allocate(request.request_id, 1)
            request.num_blocks += 1
        if prompt_need > 0:
            allocate(prompt, prompt_need, kv, replica.scheduler, now)
        num_new = next_new
        replica.sample(num_decodes + 1, num_decodes + num_new)
        prompt_context = prompt.num_computed_tokens
        priced = _priced_by_sums(cost_model, num_decodes, decode_sum + done * num_decodes, num_new, prompt_context)
        if priced is None or metered:  # the expert meter reads the shape
            shape = BatchShape((1,) * num_decodes + (num_new,),
                               tuple([context + done for context in plan.contexts]) + (prompt_context,))
            seconds = cost_model.iteration_time(shape) if priced is None else priced
        else:
            shape, seconds = None, priced
        began = now
    last_gaps = _apply_decodes(replica, decodes, ends)
    prompt.num_computed_tokens += num_new
    if prompt.num_computed_tokens == prompt.num_tokens:
        replica.token_sampled(prompt, env.now, last_gaps)
    replica.gaps.add_step(last_gaps)
    return done


def _priced_by_sums(cost_model: CostModel, num_decodes: int, decode_sum: int, num_new: int, prompt_context: int,
                    ) -> float | None:
    """Seconds of a step of decodes and a chunk of `num_new` tokens, from their sums
    (`CostModel.decodes_and_chunk_by_sum`); None: price its shape (a model that declines, or a
    chunk of one token, which a shape counts as a decode)."""
    if num_new <= 1:
        return None
    return cost_model.decodes_and_chunk_by_sum(num_decodes, decode_sum, num_new, prompt_context)


def _plan(replica: Replica, step: PreparedStep) -> _Plan | None:
    """None when `step` is not decodes beside one prompt whose later steps are known, or the
    prompt ends in it, or a decode finishes with it."""
    entries = step.entries
    if (len(entries) < 2 or step.swap_s or step.host_copies is not None or step.shape.layer_slices
            or len(step.shape.new_tokens) != len(entries) or not replica.prompt_chunks_unobserved()):
        return None
    prompt, first_chunk = entries[-1]
    left = prompt.num_tokens - prompt.num_computed_tokens - first_chunk
    if left <= 0 or is_decode(prompt) or (replica.kv.caches_prefixes and prompt.prefix_hashes):
        return None
    last_decode, its_new = entries[-2]
    if its_new != 1 or not is_decode(last_decode):
        return None  # two prompts in the batch (arrivals queued): known without a pass over the decodes
    assert replica.prompt_chunk is not None  # a trusted scheduler's (`prompt_chunks_unobserved`)
    chunk = replica.prompt_chunk(entries, replica.env.now)
    if chunk is None:
        return None
    num_steps = 1 + -(-left // chunk)
    block_size = replica.kv.block_size
    decodes = []
    contexts = []
    crossings: dict[int, list[Request]] = {}
    for request, num_new in entries[:-1]:
        if num_new != 1 or not is_decode(request):
            return None
        remaining = request.output_tokens - request.num_generated
        if remaining < num_steps:
            num_steps = remaining
            if num_steps <= 1:
                return None
        context = request.num_computed_tokens
        decodes.append(request)
        contexts.append(context)
        # Its step j computes token context + j + 1: a new block first at j = held * block_size - context.
        first_crossing = request.num_blocks * block_size - context
        if first_crossing < num_steps:  # most decodes cross none in a prompt's few steps
            for at in range(first_crossing, num_steps, block_size):
                crossings.setdefault(at, []).append(request)
    return _Plan(decodes, contexts, prompt, chunk, num_steps, crossings)


def _record(replica: Replica, prompt: Request, num_decodes: int, num_new: int, began: float, now: float) -> None:
    """The step's row of the iteration table, as `Replica._apply` writes it (a prompt's last
    token of a recomputed request counts as a decode there)."""
    prompt_decodes = is_decode(prompt)
    prefill_tokens = 0 if prompt_decodes else num_new
    replica.metrics.add_iteration((replica.replica_id, began, now, num_decodes + 1, num_decodes + num_new,
                                   prefill_tokens, num_decodes + prompt_decodes))


def _apply_decodes(replica: Replica, decodes: list[Request], ends: list[float]) -> list[float]:
    """Each decode's tokens of the steps that ended at `ends`, as a decode stretch applies them
    (`bookkeeping.record_decoded`); a decode whose output is complete finishes. The token gaps go to
    the pool as stepping adds them, a step's list at a time, but for the last step's, returned
    (the prompt's gap may follow)."""
    steps = len(ends)
    first_end = ends[0]
    last_end = ends[-1]
    inner = [end - before for before, end in zip(ends[:-1], ends[1:], strict=True)]
    inner_max = max(inner, default=0.0)
    first_gaps, finished = record_decoded(decodes, steps, first_end, last_end, inner_max)
    metrics = replica.metrics
    if metrics.tokens is not None:
        metrics.tokens.add_stretch([request.request_id for request in decodes], np.array(ends))
    if inner:
        replica.gaps.add_step(first_gaps)
        replica.gaps.add_equal_steps(inner[:-1], len(decodes))
    for request in finished:
        replica.finish(request, last_end)
    return [inner[-1]] * len(decodes) if inner else first_gaps
