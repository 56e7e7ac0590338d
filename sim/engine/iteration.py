"""One iteration of a replica: its entries and cost, and where it may be cut short.

An iteration normally runs to its end. A scheduler that preempts at operator boundaries
(FlowPrefill) may interrupt it: the iteration then continues to the next operator boundary,
is suspended there with the work it has done, and later resumes where it stopped, without
recomputing anything.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from servesim.hwmodels import BatchShape
from servesim.sim.engine.request import Request
from servesim.sim.engine.views import IterationView


@dataclass(eq=False, slots=True)
class Iteration:
    """`total_s` of work, of which `done_s` was done before the current run started at `start_s`."""

    entries: list[tuple[Request, int]]
    shape: BatchShape
    total_s: float
    start_s: float
    done_s: float = 0.0
    boundaries: Callable[[], np.ndarray] | None = field(default=None, repr=False)
    """Cumulative operator end times in work seconds (computed only if it is interrupted)."""
    began_s: float = -1.0
    """When it first started (its start before any suspension)."""
    _view: IterationView | None = field(default=None, repr=False)

    @property
    def view(self) -> IterationView:
        """The read-only view policies see (made on first use, then always the same object)."""
        if self._view is None:
            self._view = IterationView(self)
        return self._view

    @property
    def remaining_s(self) -> float:
        """Work left when the current run started (or when it was suspended)."""
        return self.total_s - self.done_s

    @property
    def end_s(self) -> float:
        return self.start_s + self.remaining_s

    def next_boundary_s(self, now: float) -> float:
        """The first operator boundary at or after `now` (absolute simulated time)."""
        work = self.done_s + (now - self.start_s)
        if self.boundaries is None:
            return self.end_s
        ends = self.boundaries()
        index = int(np.searchsorted(ends, work - 1e-12, side="left"))
        if index >= len(ends):
            return self.end_s
        return self.start_s + (float(ends[index]) - self.done_s)

    def suspend_at(self, boundary_s: float) -> None:
        self.done_s += boundary_s - self.start_s

    def resume_at(self, now: float) -> None:
        self.start_s = now
