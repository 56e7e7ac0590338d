"""What a sweep tells its caller as it goes: the CLI draws a bar from it, a notebook may log it."""
from __future__ import annotations

from typing import TYPE_CHECKING

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
