"""What policies return: decisions that the engine's mechanisms apply."""
from __future__ import annotations

from dataclasses import dataclass, field

from policies.views import RequestView


@dataclass(slots=True)
class ScheduleDecision:
    """One iteration's plan.

    `preempted` running requests are evicted first (in order); then `scheduled` entries run,
    each with the number of new tokens it computes. A scheduled request that is waiting is
    admitted by being scheduled.
    """

    scheduled: list[tuple[RequestView, int]] = field(default_factory=list)
    preempted: list[RequestView] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(n for _, n in self.scheduled)
