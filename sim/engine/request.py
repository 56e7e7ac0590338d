"""A request and its mutable serving state.

Following vLLM v1, progress is one number: `num_computed_tokens` catches up with `num_tokens`
(prompt plus tokens generated so far). Chunked prefill, decoding and recompute after preemption
are all "how many new tokens does this request compute in this iteration".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from mypy_extensions import mypyc_attr

from servesim.policies.views import tokens_left
from servesim.sim.engine.views import request_view

INFINITY = math.inf


class RequestState(Enum):
    WAITING = "waiting"
    RUNNING = "running"
    SWAPPED = "swapped"
    """Preempted with its KV in host memory: waiting to be swapped back in."""
    TRANSFERRING = "transferring"
    """Prefilled on a prefill replica, which holds its KV until the KV has reached a decode replica."""
    FINISHED = "finished"
    REJECTED = "rejected"
    """Could never be served (too long for the model or the memory)."""
    DROPPED = "dropped"
    """Gave up: not yet scheduled when its class's timeout passed."""


ENDED = (RequestState.FINISHED, RequestState.REJECTED, RequestState.DROPPED)


@mypyc_attr(allow_interpreted_subclasses=True)  # the profiler's EngineRequest
@dataclass(slots=True, eq=False)
class Request:
    """`num_tokens` (prompt + generated) is stored, not derived: the scheduler reads it every
    iteration for every running request."""

    request_id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    priority: int = 0
    slo_class: str = "default"
    session_id: str | None = None
    prefix_hashes: tuple[int, ...] = ()
    prefix_block_tokens: int = 0
    ttft_deadline_s: float = INFINITY
    timeout_at_s: float = INFINITY

    state: RequestState = RequestState.WAITING
    num_tokens: int = 0
    replica_id: int = -1
    num_computed_tokens: int = 0
    num_generated: int = 0
    num_blocks: int = 0
    num_cached_tokens: int = 0
    num_preemptions: int = 0
    num_swaps: int = 0
    picked_up_s: float = math.nan
    """When the engine took it in: its arrival at an idle engine, else the end of the step running
    then (vLLM's busy loop reads its input queue between steps and stamps `queued_ts` there)."""
    first_scheduled_s: float = math.nan
    first_token_s: float = math.nan
    last_token_s: float = math.nan
    finish_s: float = math.nan
    max_tbt_s: float = 0.0
    reject_reason: str = ""
    prefix_keys: list[int] | None = None
    """The prefix cache's keys of its prompt blocks, computed on first use while it is served."""
    view: Any = field(default=None, repr=False)
    """Its read-only view: what policies receive (`sim.engine.views`)."""

    def __post_init__(self) -> None:
        self.num_tokens = self.prompt_tokens + self.num_generated
        self.view = request_view(self)

    @property
    def is_swapped(self) -> bool:
        return self.state is RequestState.SWAPPED

    @property
    def tokens_left(self) -> int:
        """What a replica has yet to do for it (`policies.views.tokens_left`)."""
        return tokens_left(self)

    @property
    def prefix_group(self) -> int | None:
        return self.prefix_hashes[0] if self.prefix_hashes else None

    def __repr__(self) -> str:
        return (
            f"Request(id={self.request_id}, state={self.state.value}, "
            f"computed={self.num_computed_tokens}/{self.num_tokens}, "
            f"generated={self.num_generated}/{self.output_tokens})"
        )
