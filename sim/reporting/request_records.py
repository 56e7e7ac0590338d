"""Ended requests' rows, written to `requests.parquet` in request-id order as the run goes.

Requests end out of order, but the table is in id (workload) order. A row waits until every
request with a lower id has ended, so only the rows of requests that overtook a still
unfinished one are held in memory; the rest are already in the file's row groups. A worker
process that simulates some of the replicas (`servesim.sim.parallel`) records only the ids it
is given, in the same way.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from servesim.sim.engine.request import Request, RequestState
from servesim.sim.errors import EngineInvariantError
from servesim.sim.experiment.classes import ServiceClass
from servesim.sim.reporting.request_rows import request_row
from servesim.sim.reporting.results import request_frame
from servesim.sim.reporting.spill import ParquetSpill


class RequestRecorder:
    """Takes each request as it ends (finished, rejected or dropped), keeps its row, not the request."""

    def __init__(self, path: Path, classes: Mapping[str, ServiceClass], stream_out_s: float = 0.0,
                 ids: np.ndarray | None = None) -> None:
        self._spill = ParquetSpill(path, lambda rows: request_frame(rows, classes))
        self._stream_out_s = stream_out_s
        self._waiting: dict[int, tuple] = {}
        self._ids = None if ids is None else ids.tolist()
        """The ids recorded, ascending (None: every id from 0)."""
        self.num_written = 0
        """Rows in the file: the first num_written requests (of `ids`) have all ended."""

    @property
    def num_held(self) -> int:
        """Rows in memory, waiting for a request with a lower id to end."""
        return len(self._waiting)

    def record(self, request: Request) -> None:
        request_id = request.request_id
        if self._written(request_id) or request_id in self._waiting:
            raise EngineInvariantError(f"{request!r} ended twice")
        if request.state is RequestState.FINISHED and request.num_generated != request.output_tokens:
            raise EngineInvariantError(f"{request!r} finished with {request.num_generated} tokens generated")
        row = request_row(request, self._stream_out_s)
        if request_id != self._next_id():
            self._waiting[request_id] = row
            return
        self._spill.append(row)
        self.num_written += 1
        waiting = self._waiting
        while waiting and (next_id := self._next_id()) in waiting:
            self._spill.append(waiting.pop(next_id))
            self.num_written += 1

    def _written(self, request_id: int) -> bool:
        if self._ids is None:
            return request_id < self.num_written
        return self.num_written > 0 and request_id <= self._ids[self.num_written - 1]

    def _next_id(self) -> int:
        """The id of the next row the file takes (past the last id: one that never comes)."""
        if self._ids is None:
            return self.num_written
        return self._ids[self.num_written] if self.num_written < len(self._ids) else -1

    def close(self, num_requests: int) -> Path:
        """The complete table; an error if any of the `num_requests` requests never ended."""
        if self.num_written != num_requests:
            never = num_requests - self.num_written - len(self._waiting)
            raise EngineInvariantError(
                f"{never} request(s) never finished, first request {self._next_id()} (of {num_requests})"
            )
        return self._spill.close()
