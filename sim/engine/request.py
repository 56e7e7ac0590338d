"""A request and its mutable serving state.

Following vLLM v1, progress is one number: `num_computed_tokens` catches up with `num_tokens`
(prompt plus tokens generated so far). Chunked prefill, decoding and recompute after preemption
are all "how many new tokens does this request compute in this iteration".
"""
from __future__ import annotations

import math
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
class Request:
    """`num_tokens` (prompt + generated) is stored, not derived: the scheduler reads it every
    iteration for every running request. A plain class with its own `__init__`, not a dataclass:
    mypyc compiles this one, while a dataclass's generated `__init__` stays interpreted (a run
    makes one per request, and a worker process of a parallel run one per request of the run)."""

    __slots__ = (
        "request_id", "arrival_s", "prompt_tokens", "output_tokens", "priority", "slo_class", "session_id",
        "prefix_hashes", "prefix_block_tokens", "ttft_deadline_s", "timeout_at_s", "state", "num_tokens",
        "replica_id", "num_computed_tokens", "num_generated", "num_blocks", "num_cached_tokens", "num_preemptions",
        "num_swaps", "picked_up_s", "first_scheduled_s", "first_token_s", "last_token_s", "finish_s", "max_tbt_s",
        "reject_reason", "prefix_keys", "view",
    )

    def __init__(
        self,
        request_id: int,
        arrival_s: float,
        prompt_tokens: int,
        output_tokens: int,
        priority: int = 0,
        slo_class: str = "default",
        session_id: str | None = None,
        prefix_hashes: tuple[int, ...] = (),
        prefix_block_tokens: int = 0,
        ttft_deadline_s: float = INFINITY,
        timeout_at_s: float = INFINITY,
    ) -> None:
        self.request_id = request_id
        self.arrival_s = arrival_s
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.priority = priority
        self.slo_class = slo_class
        self.session_id = session_id
        self.prefix_hashes = prefix_hashes
        self.prefix_block_tokens = prefix_block_tokens
        self.ttft_deadline_s = ttft_deadline_s
        self.timeout_at_s = timeout_at_s
        self.state = RequestState.WAITING
        self.num_tokens = prompt_tokens
        self.replica_id = -1
        self.num_computed_tokens = 0
        self.num_generated = 0
        self.num_blocks = 0
        self.num_cached_tokens = 0
        self.num_preemptions = 0
        self.num_swaps = 0
        self.picked_up_s = math.nan
        """When the engine took it in: its arrival at an idle engine, else the end of the step running
        then (vLLM's busy loop reads its input queue between steps and stamps `queued_ts` there)."""
        self.first_scheduled_s = math.nan
        self.first_token_s = math.nan
        self.last_token_s = math.nan
        self.finish_s = math.nan
        self.max_tbt_s = 0.0
        self.reject_reason = ""
        self.prefix_keys: list[int] | None = None
        """The prefix cache's keys of its prompt blocks, computed on first use while it is served."""
        self.view: Any = request_view(self)
        """Its read-only view: what policies receive (`sim.engine.views`)."""

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
