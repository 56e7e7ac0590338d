"""Output-length predictors for length-aware scheduling (SJF, SRPT, BatchLLM's ordering).

A prediction is made once per request and kept, as a real predictor runs once on the prompt.
"""
from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from servesim.policies.base import LengthPredictor, PolicyParams
from servesim.policies.registry import register
from servesim.policies.views import ReplicaView, RequestView


@register("predictor", "oracle")
class OracleLengthPredictor(LengthPredictor):
    """The true output length: the upper bound any predictor can reach."""

    def predict(self, request: RequestView, replica: ReplicaView, now: float) -> float:
        return float(request.output_tokens)


class NoisyParams(PolicyParams):
    error: float = Field(
        0.5, ge=0,
        description="standard deviation of log(prediction / truth): 0.5 is within x0.6-x1.6 two times in three",
    )


@register("predictor", "noisy_oracle")
class NoisyOracleLengthPredictor(LengthPredictor):
    """The true length times a lognormal error factor, drawn once per request from the policy's seed.

    Models learned predictors of known accuracy, e.g. the proxy-model predictor of Qiu et al.,
    "Efficient Interactive LLM Serving with Proxy Model-based Sequence Length Prediction",
    AIOps 2024, whose errors a sweep of `error` brackets.
    """

    Params = NoisyParams
    params: NoisyParams

    def __init__(self, params: NoisyParams, rng: np.random.Generator | None = None) -> None:
        super().__init__(params, rng)
        self._predictions: dict[int, float] = {}

    def predict(self, request: RequestView, replica: ReplicaView, now: float) -> float:
        prediction = self._predictions.get(request.request_id)
        if prediction is None:
            factor = math.exp(self.params.error * float(self.rng.standard_normal()))
            prediction = self._predictions[request.request_id] = max(1.0, request.output_tokens * factor)
        return prediction


class ClassEmpiricalParams(PolicyParams):
    quantile: float = Field(0.5, gt=0, lt=1, description="which quantile of the class's observed lengths to predict")
    min_samples: int = Field(10, ge=1, description="observations a class needs before its own distribution is used")
    default_tokens: int = Field(256, ge=1, description="prediction before any request has finished")


@register("predictor", "class_empirical")
class ClassEmpiricalLengthPredictor(LengthPredictor):
    """A quantile of the output lengths recently observed in the request's SLO class.

    In the spirit of CASTILLO (Perez-Ramirez et al., "CASTILLO: Characterizing Response Length
    Distributions of Large Language Models", 2025): output length is a distribution that
    depends on the kind of request, so the class's own empirical distribution predicts it.
    Falls back to all classes pooled, then to `default_tokens`. Never reads true lengths of
    unfinished requests.
    """

    Params = ClassEmpiricalParams
    params: ClassEmpiricalParams

    def __init__(self, params: ClassEmpiricalParams, rng: np.random.Generator | None = None) -> None:
        super().__init__(params, rng)
        self._state: tuple[int, int] = (-1, -1)
        self._by_class: dict[str, float] = {}
        self._pooled: float = float(params.default_tokens)
        self._predictions: dict[int, float] = {}

    def predict(self, request: RequestView, replica: ReplicaView, now: float) -> float:
        prediction = self._predictions.get(request.request_id)
        if prediction is None:
            self._refresh(replica)
            prediction = self._by_class.get(request.slo_class, self._pooled)
            self._predictions[request.request_id] = prediction
        return prediction

    def _refresh(self, replica: ReplicaView) -> None:
        finished = replica.recently_finished
        state = (len(finished), finished[-1].request_id if finished else -1)
        if state == self._state:
            return
        self._state = state
        lengths: dict[str, list[int]] = {}
        for done in finished:
            lengths.setdefault(done.slo_class, []).append(done.output_tokens)
        q, enough = self.params.quantile, self.params.min_samples
        self._by_class = {c: float(np.quantile(v, q)) for c, v in lengths.items() if len(v) >= enough}
        pooled = [n for v in lengths.values() for n in v]
        self._pooled = float(np.quantile(pooled, q)) if len(pooled) >= enough else float(self.params.default_tokens)
