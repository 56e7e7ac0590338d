"""The SimPy network: transfers split into flows that share device ports max-min fairly.

A transfer of `nbytes` from a group of devices to another runs as min(len(src), len(dst)) equal
flows (device i to device i). Whenever a flow starts or ends, every flow's progress is brought up
to `now`, the rates are recomputed (`fair_share`), and one timeout is scheduled for the next flow
to finish; a timeout made stale by a later change finds its generation outdated and does nothing.
A transfer's event succeeds when its last byte arrives: its last flow ends, plus the path's
latency (paid once per transfer).

SimPy cannot withdraw a scheduled timeout, so a stale one still advances the clock when it comes
due. It can do so past every other event only by float rounding: a timer is set for the soonest
end; that flow is frozen at a saturated link whose flows all end no sooner, and a saturated link
carries its bytes no faster whatever joins later, so some flow (and its transfer's delivery) ends
at or after the timer up to rounding and the finishing tolerance. Those last ulps still make
`env.now` after the run a few 1e-16 later than the last real event; `run_to_last_event` runs a
simulation and returns the time of its last event that was not a stale timer.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import simpy

from servesim.sim.network.fair_share import max_min_rates
from servesim.sim.network.link_stats import ByteCounts, LinkSample, LinkStats
from servesim.sim.network.topology import Direction, LinkId, Topology

# A flow whose remaining bytes would take less than this share of the clock (at least of one second)
# to send has finished: the timer that wakes for it lands on its end up to float rounding of `now`
# (a few 1e-16 of it), which this absorbs, while a flow one byte from its end at 1 TB/s is not cut.
_FINISH_TOLERANCE = 1e-13


@dataclass(frozen=True, slots=True)
class TransferRecord:
    start_s: float
    end_s: float
    nbytes: int


@dataclass(slots=True)
class _Transfer:
    event: simpy.Event
    start_s: float
    nbytes: int
    tag: str
    latency_s: float
    flows_left: int


@dataclass(frozen=True, slots=True)
class _Leg:
    path: tuple[LinkId, ...]
    nbytes: int
    latency_s: float


@dataclass(slots=True)
class _Flow:
    path: tuple[int, ...]  # indices into the network's links
    nbytes: int
    remaining: float
    transfer: _Transfer
    rate: float = 0.0


class Network:
    """Device-to-device transfers over a `Topology`, with per-link accounting."""

    def __init__(self, env: simpy.Environment, topology: Topology) -> None:
        self._env = env
        self.topology = topology
        self._flows: list[_Flow] = []
        self._last_update = env.now
        self._generation = 0
        self._link_index: dict[LinkId, int] = {}
        self._links: list[LinkStats] = []
        self._samples: list[LinkSample] = []
        self._loaded: dict[int, None] = {}  # links that carried flows after the last change
        self.counts = ByteCounts()
        self.num_stale_timers = 0
        """Timers that came due after a later change had made them stale (they did nothing)."""

    def send(self, src_devices: Sequence[int], dst_devices: Sequence[int], nbytes: int, tag: str = "kv") -> simpy.Event:
        """An event that succeeds with a `TransferRecord` when the last byte arrives."""
        if not src_devices or not dst_devices:
            raise ValueError("a transfer needs at least one source and one destination device")
        nbytes = _whole(nbytes)
        return self._start(self._legs(src_devices, dst_devices, nbytes), nbytes, tag)

    def to_host(self, devices: Sequence[int], nbytes: int, tag: str = "swap") -> simpy.Event:
        """Copy `nbytes` from `devices` to their nodes' host memory, each device an equal share over
        its own host port (a replica's ranks each move their shard); succeeds as `send` does."""
        return self._start(*self._host_legs(devices, nbytes, Direction.OUT), tag)

    def from_host(self, devices: Sequence[int], nbytes: int, tag: str = "swap") -> simpy.Event:
        """Copy `nbytes` from host memory to `devices`, as `to_host` the other way."""
        return self._start(*self._host_legs(devices, nbytes, Direction.IN), tag)

    def _start(self, legs: list[_Leg], nbytes: int, tag: str) -> simpy.Event:
        """Start a transfer of `legs` (those that cross a link); its event succeeds when the last byte arrives."""
        now = self._env.now
        event = self._env.event()
        self.counts.add_sent(tag, nbytes)
        transfer = _Transfer(event, now, nbytes, tag, latency_s=0.0, flows_left=0)
        if not legs:
            self._deliver(transfer)
            return event
        self._advance(now)
        for leg in legs:
            transfer.latency_s = max(transfer.latency_s, leg.latency_s)
            transfer.flows_left += 1
            path = tuple(self._index(link) for link in leg.path)
            self._flows.append(_Flow(path, leg.nbytes, float(leg.nbytes), transfer))
        self._reallocate(now)
        return event

    def ideal_time_s(self, src_devices: Sequence[int], dst_devices: Sequence[int], nbytes: int) -> float:
        """Seconds the transfer takes alone on idle links (its flows still share common ports)."""
        legs = self._legs(src_devices, dst_devices, nbytes)
        if not legs:
            return 0.0
        capacity = {link: self.topology.capacity(link) for leg in legs for link in leg.path}
        rates = max_min_rates([leg.path for leg in legs], capacity)
        return max(leg.latency_s for leg in legs) + max(
            leg.nbytes / rate for leg, rate in zip(legs, rates, strict=True))

    def _legs(self, src_devices: Sequence[int], dst_devices: Sequence[int], nbytes: int) -> list[_Leg]:
        """The flows of a transfer that cross a link: device i to device i over the smaller group."""
        pairs = list(zip(src_devices, dst_devices, strict=False))
        legs = [_Leg(self.topology.path(src, dst), part, self.topology.latency_s(src, dst))
                for (src, dst), part in zip(pairs, _split(nbytes, len(pairs)), strict=True)]
        return [leg for leg in legs if leg.path and leg.nbytes > 0]

    def _host_legs(self, devices: Sequence[int], nbytes: int, direction: Direction) -> tuple[list[_Leg], int]:
        """One flow per device over its host port, the bytes split evenly; and the bytes."""
        if not devices:
            raise ValueError("a copy to or from host memory needs at least one device")
        nbytes = _whole(nbytes)
        topology = self.topology
        legs = [_Leg(topology.host_path(device, direction), part, topology.host_latency_s(device))
                for device, part in zip(devices, _split(nbytes, len(devices)), strict=True)]
        return [leg for leg in legs if leg.nbytes > 0], nbytes

    def utilisation_rows(self) -> list[LinkSample]:
        """Every change of a link's load, in time order."""
        return list(self._samples)

    def link_stats(self) -> list[LinkStats]:
        """The links that carried traffic, in the order they were first used."""
        return list(self._links)

    def totals(self) -> dict[str, int]:
        return {"bytes_sent": sum(self.counts.sent.values()), "bytes_received": sum(self.counts.received.values()),
                "num_transfers": self.counts.num_transfers}

    @property
    def now(self) -> float:
        return float(self._env.now)

    def _advance(self, now: float) -> None:
        elapsed = now - self._last_update
        if elapsed > 0:
            for flow in self._flows:
                flow.remaining -= flow.rate * elapsed
        self._last_update = now

    def _reallocate(self, now: float) -> None:
        """New rates for the flows in progress, the links' loads, and one timer for the next end."""
        capacity = {link: self._links[link].capacity_bytes_per_s for flow in self._flows for link in flow.path}
        rates = max_min_rates([flow.path for flow in self._flows], capacity)
        load: dict[int, float] = {}
        count: dict[int, int] = {}
        for flow, rate in zip(self._flows, rates, strict=True):
            flow.rate = rate
            for link in flow.path:
                load[link] = load.get(link, 0.0) + rate
                count[link] = count.get(link, 0) + 1
        for link in {**self._loaded, **dict.fromkeys(load)}:
            self._links[link].update(now, load.get(link, 0.0), count.get(link, 0), self._samples)
        self._loaded = dict.fromkeys(load)
        self._generation += 1
        if self._flows:
            wait = max(0.0, min(flow.remaining / flow.rate for flow in self._flows))
            generation = self._generation
            self._env.timeout(wait).callbacks.append(partial(self._on_timer, generation))

    def _on_timer(self, generation: int, _event: simpy.Event) -> None:
        if generation != self._generation:
            self.num_stale_timers += 1
            return
        now = self._env.now
        self._advance(now)
        soonest = min(flow.remaining / flow.rate for flow in self._flows) + _FINISH_TOLERANCE * max(1.0, now)
        finished = [flow for flow in self._flows if flow.remaining / flow.rate <= soonest]
        self._flows = [flow for flow in self._flows if flow.remaining / flow.rate > soonest]
        completed: list[_Transfer] = []
        for flow in finished:
            for link in flow.path:
                self._links[link].bytes += flow.nbytes
            flow.transfer.flows_left -= 1
            if flow.transfer.flows_left == 0:
                completed.append(flow.transfer)
        self._reallocate(now)
        for transfer in completed:
            self._env.timeout(transfer.latency_s).callbacks.append(partial(self._arrived, transfer))

    def _arrived(self, transfer: _Transfer, _event: simpy.Event) -> None:
        self._deliver(transfer)

    def _deliver(self, transfer: _Transfer) -> None:
        self.counts.add_received(transfer.tag, transfer.nbytes)
        transfer.event.succeed(TransferRecord(transfer.start_s, float(self._env.now), transfer.nbytes))

    def _index(self, link: LinkId) -> int:
        """The link's index, its accounting created on first use (only links with traffic have one)."""
        index = self._link_index.get(link)
        if index is None:
            index = self._link_index[link] = len(self._links)
            self._links.append(LinkStats(self.topology.link_name(link), str(link.direction),
                                         self.topology.capacity(link)))
        return index


def _whole(nbytes: int) -> int:
    if nbytes < 0 or int(nbytes) != nbytes:
        raise ValueError(f"a transfer carries a whole, non-negative number of bytes, got {nbytes}")
    return int(nbytes)


def _split(nbytes: int, parts: int) -> list[int]:
    """`nbytes` in `parts` integer shares that differ by at most one byte and sum exactly."""
    base, extra = divmod(int(nbytes), parts)
    return [base + (1 if index < extra else 0) for index in range(parts)]


def run_to_last_event(env: simpy.Environment, network: Network, beat: Callable[[], None] | None = None,
                      every: int = 4096) -> float:
    """Run `env` until no event is left (calling `beat()` every `every` events, if given) and return
    the time of its last event that was not one of `network`'s stale timers: the run's real end."""
    step = env.step
    end = env.now
    since_beat = 0
    try:
        while True:
            stale = network.num_stale_timers
            step()
            if network.num_stale_timers == stale:
                end = env.now
            if beat is not None:
                since_beat += 1
                if since_beat == every:
                    since_beat = 0
                    beat()
    except simpy.core.EmptySchedule:
        return float(end)
