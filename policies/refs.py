"""Policies named inside another policy's parameters: a scheduler's queue order or length predictor.

`{name: noisy_oracle, error: 0.3}`: the name and the parameters are checked against
the registry when the outer parameters are validated, so a typo fails before the run starts.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class PolicyRef(BaseModel):
    """`{name: ..., <parameters>}` naming a policy of kind `KIND`."""

    model_config = ConfigDict(extra="allow", frozen=True)
    KIND: ClassVar[str] = ""
    name: str

    @model_validator(mode="after")
    def _known_and_valid(self) -> PolicyRef:
        from servesim.policies.registry import validate_params

        validate_params(self.KIND, self.name, self.params())
        return self

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def build(self, rng: np.random.Generator) -> Any:
        from servesim.policies.registry import create_policy

        return create_policy(self.KIND, self.name, self.params(), rng=rng)


class QueueRef(PolicyRef):
    KIND: ClassVar[str] = "queue"
    name: str = Field("fcfs", description="registered queue order (see `simrun list`)")


class PredictorRef(PolicyRef):
    KIND: ClassVar[str] = "predictor"
    name: str = Field("oracle", description="registered output-length predictor (see `simrun list`)")
