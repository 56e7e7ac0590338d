"""Per-link accounting: bytes carried, busy time, peak load, and the utilisation series.

A sample is written only when a link's load or flow count changes, so the series is exact (the
load is constant between samples) and as long as the number of changes, not of time steps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class LinkSample(NamedTuple):
    """From `time_s` on (until the link's next sample) the link carries `flows` flows at this load."""

    time_s: float
    link: str
    direction: str
    utilisation: float
    flows: int


@dataclass(slots=True)
class LinkStats:
    name: str
    direction: str
    capacity_bytes_per_s: float
    bytes: int = 0
    busy_s: float = 0.0
    busy_since: float | None = None
    peak_utilisation: float = 0.0
    utilisation: float = 0.0
    flows: int = 0

    def update(self, now: float, load_bytes_per_s: float, flows: int, samples: list[LinkSample]) -> None:
        """The link's load from `now` on; appends a sample when it changed."""
        utilisation = load_bytes_per_s / self.capacity_bytes_per_s
        if utilisation == self.utilisation and flows == self.flows:
            return
        if flows and self.busy_since is None:
            self.busy_since = now
        elif not flows and self.busy_since is not None:
            self.busy_s += now - self.busy_since
            self.busy_since = None
        self.utilisation, self.flows = utilisation, flows
        self.peak_utilisation = max(self.peak_utilisation, utilisation)
        samples.append(LinkSample(now, self.name, self.direction, utilisation, flows))

    def busy_until(self, now: float) -> float:
        """Seconds with at least one flow, counting a busy spell still open at `now`."""
        return self.busy_s + (now - self.busy_since if self.busy_since is not None else 0.0)


@dataclass(slots=True)
class ByteCounts:
    """Bytes handed to the network and bytes delivered, by tag; equal once every transfer ended."""

    sent: dict[str, int] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)
    num_transfers: int = 0

    def add_sent(self, tag: str, nbytes: int) -> None:
        self.sent[tag] = self.sent.get(tag, 0) + nbytes
        self.num_transfers += 1

    def add_received(self, tag: str, nbytes: int) -> None:
        self.received[tag] = self.received.get(tag, 0) + nbytes
