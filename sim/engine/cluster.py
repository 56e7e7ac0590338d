"""The cluster: replicas behind a router, fed by the workload's arrival process."""
from __future__ import annotations

from collections.abc import Callable, Generator, Sequence

import simpy

from servesim.policies import RouterPolicy
from servesim.policies.contract import contract_violation, is_count, policy_raised
from servesim.sim.reporting.metrics import MetricsRecorder
from servesim.sim.engine.replica import Replica
from servesim.sim.engine.request import Request
from servesim.sim.engine.views import ReplicaView

INFINITY = float("inf")


class Cluster:
    """Routes each arrival to a replica and tracks how many requests are in the system."""

    def __init__(
        self,
        env: simpy.Environment,
        router: RouterPolicy,
        requests: Sequence[Request],
        metrics: MetricsRecorder,
        on_done: Callable[[Request], None] = lambda request: None,
    ) -> None:
        self.env = env
        self.router = router
        self.requests = requests
        self.metrics = metrics
        self.replicas: list[Replica] = []
        self._views: tuple[ReplicaView, ...] = ()
        self._on_done = on_done
        self._next_index = 0
        self._num_in_system = 0
        self.num_done = 0
        self.process = env.process(self._arrivals())

    def add_replica(self, replica: Replica) -> None:
        self.replicas.append(replica)
        self._views = tuple(r.view for r in self.replicas)

    def next_arrival_s(self) -> float:
        """When the next request enters the cluster (infinity when the workload is exhausted)."""
        if self._next_index < len(self.requests):
            return self.requests[self._next_index].arrival_s
        return INFINITY

    def request_done(self, request: Request) -> None:
        """Called by a replica when a request finishes or is rejected."""
        self._num_in_system -= 1
        self.num_done += 1
        self.metrics.sample_system(self.env.now, self._num_in_system)
        self._on_done(request)

    def _arrivals(self) -> Generator[simpy.Event, None, None]:
        env = self.env
        while self._next_index < len(self.requests):
            request = self.requests[self._next_index]
            if request.arrival_s > env.now:
                yield env.timeout(request.arrival_s - env.now)
                request.arrival_s = env.now  # the trace time up to float rounding of SimPy's clock
            self._next_index += 1
            self._num_in_system += 1
            self.metrics.sample_system(env.now, self._num_in_system)
            self.replicas[self._route(request)].submit(request)

    def _route(self, request: Request) -> int:
        """The router's choice, checked: an index into the replicas."""
        now, views = self.env.now, self._views
        try:
            chosen = self.router.route(request.view, views, now)
        except Exception as exc:
            raise policy_raised(self.router, "router.route", now, exc) from exc
        if not is_count(chosen) or not 0 <= chosen < len(views):
            raise contract_violation(self.router, "router.route", now,
                                 f"returned {chosen!r}; it must be a replica index from 0 to {len(views) - 1}")
        return int(chosen)
