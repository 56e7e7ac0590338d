"""Schedulers named by their order: priority, EDF, SJF and SRPT over the token-budget step."""
from __future__ import annotations

from pydantic import Field

from servesim.policies.base import QueuePolicy
from servesim.policies.queues import (
    EdfQueuePolicy,
    PredictedParams,
    PriorityQueuePolicy,
    SjfQueuePolicy,
    SrptQueuePolicy,
)
from servesim.policies.refs import PredictorRef
from servesim.policies.registry import register
from servesim.policies.schedulers.ordered import OrderedParams, OrderedScheduler


class PriorityParams(OrderedParams):
    preemptive: bool = Field(True, description="preempt lower-priority running requests for a higher-priority one")


@register("scheduler", "priority")
class PriorityScheduler(OrderedScheduler):
    """Strict priority classes (smaller value first), preempting lower classes when full.

    Source: vLLM's priority scheduling policy (`--scheduling-policy priority`): waiting and
    running requests are ordered by (priority, arrival), and when memory or slots run out the
    least important running request is preempted first.
    """

    Params = PriorityParams
    params: PriorityParams

    def build_queue(self) -> QueuePolicy:
        return PriorityQueuePolicy(PriorityQueuePolicy.Params(), self.rng)


@register("scheduler", "edf")
class EdfScheduler(OrderedScheduler):
    """Earliest TTFT deadline first (arrival + the class's TTFT objective).

    Source: Liu and Layland, JACM 1973, applied to TTFT objectives as in SLO-aware LLM
    schedulers (e.g. Patke et al., "Queue Management for SLO-Oriented Large Language Model
    Serving", SoCC 2024). Non-preemptive unless `preemptive: true`.
    """

    def build_queue(self) -> QueuePolicy:
        return EdfQueuePolicy(EdfQueuePolicy.Params(), self.rng)


class PredictedOrderParams(OrderedParams):
    predictor: PredictorRef = Field(default_factory=PredictorRef, description="output-length predictor")


@register("scheduler", "sjf")
class SjfScheduler(OrderedScheduler):
    """Shortest predicted output first, non-preemptive.

    Source: Qiu et al., "Efficient Interactive LLM Serving with Proxy Model-based Sequence
    Length Prediction", AIOps 2024 (SSJF): SJF on predicted output length cuts mean latency
    against FCFS's head-of-line blocking, as much as the predictor is right.
    """

    Params = PredictedOrderParams
    params: PredictedOrderParams

    def build_queue(self) -> QueuePolicy:
        return SjfQueuePolicy(PredictedParams(predictor=self.params.predictor), self.rng)


class SrptParams(PredictedOrderParams):
    preemptive: bool = Field(True, description="preempt running requests with longer predicted remaining output")


@register("scheduler", "srpt")
class SrptScheduler(OrderedScheduler):
    """Shortest predicted remaining output first, preemptive.

    Source: Schrage, "A Proof of the Optimality of the Shortest Remaining Processing Time
    Discipline", Operations Research 1968; with learned predictions for LLMs as in Shahout et
    al., "Don't Stop Me Now: Embedding Based Scheduling for LLMs" (TRAIL), ICLR 2025.
    """

    Params = SrptParams
    params: SrptParams

    def build_queue(self) -> QueuePolicy:
        return SrptQueuePolicy(PredictedParams(predictor=self.params.predictor), self.rng)
