"""The cluster: replicas behind a router, fed by the workload's arrival process.

Requests are taken from the workload's stream one at a time, as they are sent, so a request
exists only from its arrival on. They reach the router either open-loop (at their trace or
synthetic arrival times) or from closed-loop clients (`ClosedLoop`: N clients, each sending its
next request when its previous one has come back, after a think time). With an API server path,
a request enters the engine its inbound delay after the client sent it.
"""
from __future__ import annotations

import heapq
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import simpy

from servesim.policies import RouterPolicy
from servesim.policies.contract import contract_violation, is_count, policy_raised
from servesim.sim.engine.overheads import ApiServerPath
from servesim.sim.engine.replica import Replica
from servesim.sim.engine.request import Request
from servesim.sim.engine.views import ReplicaView
from servesim.sim.reporting.metrics import MetricsRecorder

INFINITY = float("inf")


@dataclass(frozen=True)
class ClosedLoop:
    """N clients in a loop: send, wait for the whole answer, think, send the next request.

    Requests are sent in workload order; the first N go out at time 0, and each later one after
    the next pause of `think_times_s`, by the client whose previous request just came back.
    """

    concurrency: int
    think_times_s: Iterator[float]


class Cluster:
    """Routes each arrival to a replica and tracks how many requests are in the system."""

    def __init__(
        self,
        env: simpy.Environment,
        router: RouterPolicy,
        requests: Iterable[Request],
        metrics: MetricsRecorder,
        on_done: Callable[[Request], None] = lambda request: None,
        api: ApiServerPath | None = None,
        closed_loop: ClosedLoop | None = None,
    ) -> None:
        self.env = env
        self.router = router
        self._requests = iter(requests)
        self._next: Request | None = next(self._requests, None)
        """The next request to send, taken from `requests` only when the one before it is sent."""
        self.metrics = metrics
        self.replicas: list[Replica] = []
        self._entries: list[Replica] = []
        """The replicas the router chooses among (those of unified and prefill pools), in pool order."""
        self._views: tuple[ReplicaView, ...] = ()
        self._on_done = on_done
        self._api = api
        self._closed_loop = closed_loop
        self._num_in_system = 0
        self._upcoming: list[float] = []
        """Times at which a request already on its way (sent, or in the API server) enters next."""
        self.num_done = 0
        self.on_change: Callable[[], None] | None = None
        """Called as a request enters the engine (before it is routed) and as one ends (dynamic roles)."""
        self.process = env.process(self._arrivals() if closed_loop is None else self._first_sends(closed_loop))

    def add_replica(self, replica: Replica, entry: bool = True) -> None:
        """Add a replica; only `entry` replicas take arrivals (a decode pool's take prefilled requests)."""
        replica.progress_observed = entry and self.router.reads_progress
        self.replicas.append(replica)
        if entry:
            self._entries.append(replica)
            self._views = tuple(r.view for r in self._entries)

    def set_entry(self, replica: Replica, entry: bool) -> None:
        """Let `replica` take arrivals or not (dynamic roles); entries stay in replica order."""
        others = [r for r in self._entries if r is not replica]
        self._entries = sorted([*others, replica], key=lambda r: r.replica_id) if entry else others
        self._views = tuple(r.view for r in self._entries)
        replica.progress_observed = entry and self.router.reads_progress

    def next_arrival_s(self) -> float:
        """When the next request enters the engine at the earliest (infinity when none will)."""
        upcoming = self._upcoming[0] if self._upcoming else INFINITY
        if self._closed_loop is None and self._next is not None:
            return min(upcoming, self._next.arrival_s)
        return upcoming

    def request_done(self, request: Request) -> None:
        """Called by a replica when a request finishes or is rejected."""
        self._num_in_system -= 1
        self.num_done += 1
        self.metrics.sample_system(self.env.now, self._num_in_system)
        if self.metrics.tokens is not None:
            self.metrics.tokens.ended(request)
        self._on_done(request)
        if self.on_change is not None:
            self.on_change()
        loop = self._closed_loop
        if loop is not None and self._next is not None:
            think_s = next(loop.think_times_s)
            request = self._take()
            back_s = self._api.stream_out_s if self._api is not None else 0.0
            self._after(back_s + think_s, lambda: self._send(request))

    def _take(self) -> Request:
        """The next request, which the cluster now holds; the one after it is made."""
        request = self._next
        assert request is not None  # callers check there is one
        self._next = next(self._requests, None)
        return request

    def _arrivals(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        while self._next is not None:
            request = self._next
            if request.arrival_s > env.now:
                yield env.timeout(request.arrival_s - env.now)
                request.arrival_s = env.now  # the trace time up to float rounding of SimPy's clock
            self._sent(self._take())

    def _first_sends(self, loop: ClosedLoop) -> Generator[simpy.Event, Any, None]:
        """Every client sends its first request at time 0, once the replicas exist."""
        yield self.env.timeout(0)
        first = [self._take() for _ in range(loop.concurrency) if self._next is not None]
        for request in first:
            self._send(request)

    def _send(self, request: Request) -> None:
        """A closed-loop client sends `request` now: its arrival, deadline and timeout move with it."""
        shift = self.env.now - request.arrival_s
        request.arrival_s = self.env.now
        request.ttft_deadline_s += shift
        request.timeout_at_s += shift
        self._sent(request)

    def _sent(self, request: Request) -> None:
        """The client sent `request` now: it is in the system; the engine sees it after the API path."""
        self._num_in_system += 1
        self.metrics.sample_system(self.env.now, self._num_in_system)
        delay = self._api.inbound_s(request.prompt_tokens) if self._api is not None else 0.0
        if delay > 0:
            self._after(delay, lambda: self._enter(request))
        else:
            self._enter(request)

    def _enter(self, request: Request) -> None:
        if self.on_change is not None:
            self.on_change()
        self._entries[self._route(request)].submit(request)

    def _after(self, delay_s: float, action: Callable[[], None]) -> None:
        """Run `action` `delay_s` from now, keeping `next_arrival_s` aware of it."""
        at = self.env.now + delay_s
        heapq.heappush(self._upcoming, at)

        def fire(event: simpy.Event) -> None:
            heapq.heappop(self._upcoming)
            action()

        self.env.timeout(delay_s).callbacks.append(fire)

    def _route(self, request: Request) -> int:
        """The router's choice, checked: an index into the replicas."""
        now, views = self.env.now, self._views
        try:
            chosen = self.router.route(request.view, views, now)
        except Exception as exc:
            raise policy_raised(self.router, "router.route", now, exc) from exc
        # a plain int, the usual answer, passes without is_count's isinstance checks
        if (type(chosen) is not int and not is_count(chosen)) or not 0 <= chosen < len(views):
            raise contract_violation(self.router, "router.route", now,
                                 f"returned {chosen!r}; it must be a replica index from 0 to {len(views) - 1}")
        return int(chosen)
