"""What a sweep tells its caller as it goes: the CLI draws a bar from it, a notebook may log it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from servesim.sim.reporting.progress import format_duration

if TYPE_CHECKING:
    from servesim.sim.sweeps.table import PointRow


class SweepProgress:
    """Told how many points there are, then of each point as it finishes; this base class stays silent."""

    def begin(self, num_points: int, num_resumed: int) -> None:
        """Called once before any point runs (`num_resumed` finished in an earlier run)."""

    def advance(self, row: PointRow) -> None:
        """Called as each point finishes, in completion order."""

    def end(self) -> None:
        """Called once when the sweep stops, finished or interrupted."""


@dataclass(frozen=True)
class PointsExtent:
    """A sweep's points, for the progress reporter that shows simulations (`sim.reporting.progress`).

    The share done, and so the ETA, counts the points run here: those resumed took no time.
    """

    num_points: int
    num_resumed: int
    unit: str = "point"

    def fraction(self, num_done: int, now: float) -> float:
        to_run = self.num_points - self.num_resumed
        return (num_done - self.num_resumed) / to_run if to_run > 0 else 1.0

    def describe(self, num_done: int, now: float, done: str = "done") -> str:
        """`3/12 points done` (`candidates` for a placement search)."""
        return f"{num_done:,}/{self.num_points:,} {self.unit}s {done.split()[-1]}"

    def rate(self, num_done: int, elapsed: float) -> str:
        """Wall time a point: `41 s a point`."""
        run_here = num_done - self.num_resumed
        return f"{format_duration(elapsed / run_here)} a {self.unit}" if run_here > 0 else f"- a {self.unit}"
