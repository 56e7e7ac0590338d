"""A request's row of the requests table, taken as it ends.

Compiled with the engine (`setup.py`): a run makes one row per request, and reading a
request's fields from interpreted code costs a lookup each.
"""
from __future__ import annotations

import math

from servesim.sim.engine.request import Request, RequestState

REQUEST_COLUMNS = (
    "request_id", "replica", "state", "reject_reason", "arrival_s", "prompt_tokens", "output_tokens", "priority",
    "slo_class", "picked_up_s", "first_scheduled_s", "first_token_s", "finish_s", "max_tbt_s", "num_preemptions",
    "num_swaps", "cached_tokens",
)


def request_row(request: Request, stream_out_s: float = 0.0) -> tuple:
    """`request`'s row of REQUEST_COLUMNS; a finished one's token times `stream_out_s` later
    (the client sees tokens after the API server streams them out)."""
    state = request.state
    shift = stream_out_s if state is RequestState.FINISHED else 0.0
    return (
        request.request_id, request.replica_id, state.value, request.reject_reason, request.arrival_s,
        request.prompt_tokens, request.output_tokens, request.priority, request.slo_class,
        request.picked_up_s, request.first_scheduled_s, request.first_token_s + shift, request.finish_s + shift,
        request.max_tbt_s if request.output_tokens > 1 else math.nan, request.num_preemptions, request.num_swaps,
        request.num_cached_tokens,
    )
