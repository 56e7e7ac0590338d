"""Ended requests' rows, written to `requests.parquet` in request-id order as the run goes.

Requests end out of order, but the table is in id (workload) order. A row waits until every
request with a lower id has ended, so only the rows of requests that overtook a still
unfinished one are held in memory; the rest are already in the file's row groups.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from servesim.sim.engine.request import Request, RequestState
from servesim.sim.errors import EngineInvariantError
from servesim.sim.experiment.classes import ServiceClass
from servesim.sim.reporting.results import request_frame, request_row
from servesim.sim.reporting.spill import ParquetSpill


class RequestRecorder:
    """Takes each request as it ends (finished, rejected or dropped), keeps its row, not the request."""

    def __init__(self, path: Path, classes: Mapping[str, ServiceClass], stream_out_s: float = 0.0) -> None:
        self._spill = ParquetSpill(path, lambda rows: request_frame(rows, classes))
        self._stream_out_s = stream_out_s
        self._waiting: dict[int, tuple] = {}
        self.num_written = 0
        """Rows in the file: requests 0 to num_written - 1 have all ended."""

    @property
    def num_held(self) -> int:
        """Rows in memory, waiting for a request with a lower id to end."""
        return len(self._waiting)

    def record(self, request: Request) -> None:
        request_id = request.request_id
        if request_id < self.num_written or request_id in self._waiting:
            raise EngineInvariantError(f"{request!r} ended twice")
        if request.state is RequestState.FINISHED and request.num_generated != request.output_tokens:
            raise EngineInvariantError(f"{request!r} finished with {request.num_generated} tokens generated")
        self._waiting[request_id] = request_row(request, self._stream_out_s)
        while self.num_written in self._waiting:
            self._spill.append(self._waiting.pop(self.num_written))
            self.num_written += 1

    def close(self, num_requests: int) -> Path:
        """The complete table; an error if any of the `num_requests` requests never ended."""
        if self.num_written != num_requests:
            never = num_requests - self.num_written - len(self._waiting)
            raise EngineInvariantError(
                f"{never} request(s) never finished, first request {self.num_written} (of {num_requests})"
            )
        return self._spill.close()
