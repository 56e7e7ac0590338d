"""Routers: which replica of a pool receives an arriving request."""
from __future__ import annotations

from collections.abc import Sequence

from policies.base import PolicyParams, RouterPolicy
from policies.registry import register
from policies.views import ReplicaView, RequestView


@register("router", "round_robin")
class RoundRobinRouterPolicy(RouterPolicy):
    """Send arrivals to the replicas in turn, ignoring their load (the usual baseline)."""

    def __init__(self, params: PolicyParams) -> None:
        super().__init__(params)
        self._next = 0

    def route(self, request: RequestView, replicas: Sequence[ReplicaView], now: float) -> int:
        chosen = self._next % len(replicas)
        self._next = chosen + 1
        return chosen
