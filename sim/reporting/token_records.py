"""Every output token's emission time (`output.per_token`), written to `tokens.parquet` as requests end.

The engine emits tokens an iteration at a time (a time per token) or a fast-forwarded stretch at
a time (one array of iteration end times, shared by the stretch's whole batch). A request's
times are held only while it is in flight; when it finishes they become one block of rows, in
token order, and at most a row group of such rows waits in memory (`ParquetSpill`). So memory
follows the tokens of the requests in flight, never the length of the run. Stepped times are
kept apart from stretches' arrays, in a typed array per request (8 bytes a time).

Times are the client's, as in `requests.parquet`: the API server's stream-out delay is added, so
a request's token 0 is its `first_token_s` and its last token its `finish_s`, exactly.
"""
from __future__ import annotations

from array import array
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from servesim.sim.engine.request import Request, RequestState
from servesim.sim.errors import EngineInvariantError
from servesim.sim.reporting.spill import ParquetSpill, typed_frame

TOKEN_COLUMNS = ("request_id", "token_index", "time_s")
TOKEN_DTYPES = {"request_id": "int64", "token_index": "int64", "time_s": "float64"}


class TokenRecorder:
    """Collects token times from the engine's three sites (stepped iterations, fast-forwarded
    stretches, a disaggregated request's landing) and writes each request's when it ends."""

    def __init__(self, path: Path, stream_out_s: float = 0.0, rows_per_group: int | None = None) -> None:
        self._spill = ParquetSpill(path, typed_frame(TOKEN_COLUMNS, TOKEN_DTYPES), rows_per_group)
        self._stream_out_s = stream_out_s
        self._steps: defaultdict[int, array[float]] = defaultdict(_times)
        """Per request in flight: the times of its tokens from stepped iterations (8 bytes each)."""
        self._stretches: dict[int, list[tuple[int, np.ndarray]]] = {}
        """Per request in flight that was fast-forwarded: (its stepped tokens before the stretch,
        the stretch's iteration ends, an array shared by the stretch's batch)."""

    def add(self, request_id: int, now: float) -> None:
        """A token of `request_id` sampled by the iteration that ended `now`."""
        self._steps[request_id].append(now)

    def add_stretch(self, request_ids: Iterable[int], ends: np.ndarray) -> None:
        """A token for each request at each of a stretch's iteration ends (`ends`, copied once for all)."""
        ends = ends.copy()
        for request_id in request_ids:
            # a decoding request's first token came from a stepped iteration
            entry = (len(self._steps[request_id]), ends)
            self._stretches.setdefault(request_id, []).append(entry)

    def first_token_moved(self, request_id: int, now: float) -> None:
        """A disaggregated request's first token reaches the client now, as its KV lands on the
        decode replica (its TTFT), not when the prefill replica sampled it."""
        self._steps[request_id][0] = now

    def ended(self, request: Request) -> None:
        """Write a finished request's tokens (a rejected or dropped one has none)."""
        request_id = request.request_id
        steps = self._steps.pop(request_id, None)
        if steps is None:
            return
        values = _joined(steps, self._stretches.pop(request_id, ()))
        count = len(values)
        if request.state is not RequestState.FINISHED or count != request.output_tokens:
            raise EngineInvariantError(
                f"{request!r} ended with {count} token times recorded for {request.output_tokens} output tokens"
            )
        self._spill.append_columns((np.full(count, request_id, dtype=np.int64), np.arange(count, dtype=np.int64),
                                    values + self._stream_out_s))

    @property
    def num_in_flight_tokens(self) -> int:
        """Token times held for requests still in flight."""
        stretched = sum(len(ends) for stretches in self._stretches.values() for _, ends in stretches)
        return sum(len(steps) for steps in self._steps.values()) + stretched

    @property
    def num_buffered_rows(self) -> int:
        """Finished requests' rows waiting for the next row group."""
        return self._spill.num_buffered

    def close(self) -> Path:
        """The complete file; an error if a request with tokens never ended."""
        if self._steps:
            raise EngineInvariantError(f"{len(self._steps)} request(s) emitted tokens but never ended, "
                                       f"first request {min(self._steps)}")
        return self._spill.close()


def _times() -> array[float]:
    return array("d")


def _joined(steps: array[float], stretches: Iterable[tuple[int, np.ndarray]]) -> np.ndarray:
    """A request's times in token order: its stepped times with each stretch's spliced in where it ran."""
    singles = np.frombuffer(steps, dtype=np.float64)
    pieces = []
    start = 0
    for position, ends in stretches:
        pieces += [singles[start:position], ends]
        start = position
    if not pieces:
        return singles
    pieces.append(singles[start:])
    return np.concatenate(pieces)
