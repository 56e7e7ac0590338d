"""The workload routed once, before any worker starts: each request's replica.

The requests go through the whole run's arrival process (the cluster, with its API-server
delays), so the router sees them in the order and at the times the whole run shows them; the
replicas are stand-ins that only note what they receive. A router that may route so declares
`depends_on_replicas = False`: it reads no replica state, which the stand-ins do not have.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np
import simpy

from servesim.policies import create_policy
from servesim.sim.engine.cluster import Cluster
from servesim.sim.engine.replica import Replica
from servesim.sim.engine.request import Request
from servesim.sim.errors import EngineInvariantError
from servesim.sim.experiment.workload import request_stream
from servesim.sim.reporting.metrics import MetricsRecorder

if TYPE_CHECKING:
    from servesim.sim.runner import PreparedRun

UNROUTED = -1


class _NoState:
    """A stand-in replica's view: a router that reads it broke its `depends_on_replicas = False`."""

    def __init__(self, router: str) -> None:
        self._router = router

    def __getattr__(self, name: str) -> object:
        raise EngineInvariantError(f"router {self._router!r} read replica state ({name!r}) although its "
                                   "depends_on_replicas is False; make the property True")


class _Destination:
    """A replica as the router sees it when routing ahead: it notes the requests it is given."""

    def __init__(self, replica_id: int, router: str, destinations: np.ndarray) -> None:
        self.replica_id = replica_id
        self.view = _NoState(router)
        self.progress_observed = False
        self._destinations = destinations

    def submit(self, request: Request) -> None:
        self._destinations[request.request_id] = self.replica_id


def route_workload(prepared: PreparedRun) -> np.ndarray:
    """By request id, the replica the run's router sends it to (a single unified pool)."""
    from servesim.sim.runner import random_stream

    config = prepared.config
    spec = config.cluster.router
    destinations = np.full(len(prepared.workload), UNROUTED, dtype=np.int64)
    env = simpy.Environment()
    router = create_policy("router", spec.name, spec.params(), rng=random_stream(config.seed, 5))
    requests = request_stream(prepared.workload.chunks(), prepared.classes)
    cluster = Cluster(env, router, requests, MetricsRecorder(), api=prepared.api)
    for replica_id in range(config.cluster.replicas):
        cluster.add_replica(cast(Replica, _Destination(replica_id, spec.name, destinations)))
    env.run()
    if (destinations == UNROUTED).any():
        missing = int(np.flatnonzero(destinations == UNROUTED)[0])
        raise EngineInvariantError(f"request {missing} was never routed while routing ahead")
    return destinations
