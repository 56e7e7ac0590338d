"""The cluster as one worker process of a parallel run sees it: every arrival, some replicas.

A run whose replicas nothing couples (`servesim.sim.parallel`) is split among processes, each
simulating some of the replicas with the requests routed to them beforehand. Each process still
takes every request of the workload through the arrival process, at the same times and through
the same API-server delays as the whole run: so the next arrival a replica sees (which bounds
its fast-forwarded stretches) and the order of same-time events are those of the whole run, and
its replicas compute exactly what they compute there. A request routed elsewhere is then let go:
it is neither counted in the system nor handed to a replica.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import simpy

from servesim.policies import RouterPolicy
from servesim.sim.engine.cluster import Cluster
from servesim.sim.engine.overheads import ApiServerPath
from servesim.sim.engine.replica import Replica
from servesim.sim.engine.request import Request
from servesim.sim.reporting.metrics import MetricsRecorder


class ShareCluster(Cluster):
    """A cluster holding only some replicas; `destinations` names each request's replica (by id)."""

    def __init__(
        self,
        env: simpy.Environment,
        router: RouterPolicy,
        requests: Iterable[Request],
        metrics: MetricsRecorder,
        on_done: Callable[[Request], None],
        api: ApiServerPath | None,
        destinations: np.ndarray,
        owned: np.ndarray,
    ) -> None:
        super().__init__(env, router, requests, metrics, on_done, api)
        self._destinations = destinations
        self._owned = owned
        self._place: dict[int, int] = {}
        """Replica id -> its index among this share's replicas."""

    def add_replica(self, replica: Replica, entry: bool = True) -> None:
        self._place[replica.replica_id] = len(self._entries)
        super().add_replica(replica, entry)

    def _sent(self, request: Request) -> None:
        if self._owned[request.request_id]:
            super()._sent(request)
            return
        delay = self._api.inbound_s(request.prompt_tokens) if self._api is not None else 0.0
        if delay > 0:  # the whole run waits for it to enter: `next_arrival_s` must too
            self._after(delay, _let_go)

    def _route(self, request: Request) -> int:
        return self._place[int(self._destinations[request.request_id])]


def _let_go() -> None:
    """A request of another share entered the engine: nothing to do here."""
