"""Routers: which replica of a pool receives an arriving request."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from servesim.policies.base import PolicyParams, RouterPolicy
from servesim.policies.registry import register
from servesim.policies.views import ReplicaView, RequestView


@register("router", "round_robin")
class RoundRobinRouterPolicy(RouterPolicy):
    """Send arrivals to the replicas in turn, ignoring their load (the usual baseline)."""

    def __init__(self, params: PolicyParams, rng: np.random.Generator | None = None) -> None:
        super().__init__(params, rng)
        self._next = 0

    @property
    def reads_progress(self) -> bool:
        return False

    def route(self, request: RequestView, replicas: Sequence[ReplicaView], now: float) -> int:
        chosen = self._next % len(replicas)
        self._next = chosen + 1
        return chosen


@register("router", "least_outstanding")
class LeastOutstandingRouterPolicy(RouterPolicy):
    """Send each arrival to the replica with the fewest requests queued or running (ties: lowest id).

    Join-the-shortest-queue (Winston, 1977), the load balancing of the SGLang and vLLM routers.
    """

    @property
    def reads_progress(self) -> bool:
        """Requests outstanding change only when one arrives or ends, never while decoding."""
        return False

    def route(self, request: RequestView, replicas: Sequence[ReplicaView], now: float) -> int:
        return min(range(len(replicas)), key=lambda i: (replicas[i].num_outstanding, i))
