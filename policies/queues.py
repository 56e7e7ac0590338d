"""Queue orders: the order in which a scheduler considers waiting requests for admission.

Each is a sort key (smaller first); ties keep the queue's own order (arrival, preempted first).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from servesim.policies.base import LengthPredictor, PolicyParams, QueuePolicy
from servesim.policies.refs import PredictorRef
from servesim.policies.registry import register
from servesim.policies.views import ReplicaView, RequestView


@register("queue", "fcfs")
class FcfsQueuePolicy(QueuePolicy):
    """First come, first served: by arrival time."""

    time_invariant = True

    def key(self, request: RequestView, replica: ReplicaView, now: float) -> Any:
        return request.arrival_s


@register("queue", "priority")
class PriorityQueuePolicy(QueuePolicy):
    """By priority class (smaller value first), then arrival."""

    time_invariant = True

    def key(self, request: RequestView, replica: ReplicaView, now: float) -> Any:
        return (request.priority, request.arrival_s)


@register("queue", "edf")
class EdfQueuePolicy(QueuePolicy):
    """Earliest deadline first on the TTFT deadline (arrival + its class's TTFT objective).

    Source: Liu and Layland, "Scheduling Algorithms for Multiprogramming in a Hard-Real-Time
    Environment", JACM 1973; requests without a TTFT objective come last, by arrival.
    """

    time_invariant = True

    def key(self, request: RequestView, replica: ReplicaView, now: float) -> Any:
        return (request.ttft_deadline_s, request.arrival_s)


class PredictedParams(PolicyParams):
    predictor: PredictorRef = Field(default_factory=PredictorRef, description="output-length predictor")


class PredictedLengthQueue(QueuePolicy):
    """Orders by a predicted length; the predictor is built from the parameters."""

    time_invariant = True

    Params = PredictedParams
    params: PredictedParams

    def __init__(self, params: PredictedParams, rng: np.random.Generator | None = None) -> None:
        super().__init__(params, rng)
        self.predictor: LengthPredictor = params.predictor.build(self.rng)


@register("queue", "sjf")
class SjfQueuePolicy(PredictedLengthQueue):
    """Shortest predicted job (output length) first, then arrival."""

    def key(self, request: RequestView, replica: ReplicaView, now: float) -> Any:
        return (self.predictor.predict(request, replica, now), request.arrival_s)


@register("queue", "srpt")
class SrptQueuePolicy(PredictedLengthQueue):
    """Shortest predicted remaining output first (prediction minus tokens generated), then arrival."""

    def key(self, request: RequestView, replica: ReplicaView, now: float) -> Any:
        remaining = self.predictor.predict(request, replica, now) - request.num_generated
        return (max(remaining, 1.0), request.arrival_s)
