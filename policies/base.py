"""The interfaces of each policy kind. Policies read views and return decisions."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from policies.decisions import ScheduleDecision
from policies.views import ReplicaView, RequestView


class PolicyParams(BaseModel):
    """Base for policy parameter models: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PreemptionPolicy(ABC):
    """Chooses which running request gives up its KV memory when blocks run out."""

    Params = PolicyParams

    def __init__(self, params: PolicyParams) -> None:
        self.params = params

    @abstractmethod
    def select_victim(self, candidates: Sequence[RequestView], now: float) -> RequestView:
        """One of `candidates` (running, in admission order; never empty)."""


class SchedulerPolicy(ABC):
    """Chooses the next iteration's batch from a replica's waiting and running requests."""

    Params = PolicyParams

    def __init__(self, params: PolicyParams, preemption: PreemptionPolicy) -> None:
        self.params = params
        self.preemption = preemption

    @abstractmethod
    def schedule(self, replica: ReplicaView, now: float) -> ScheduleDecision:
        """The batch for the iteration starting at `now`."""

    def admission_error(self, request: RequestView) -> str | None:
        """Why this scheduler could never run `request` (it is then rejected), or None."""
        return None

    @property
    def stable_under_decode(self) -> bool:
        """True if, while only decodes progress (no arrival, finish or memory shortage), this
        scheduler keeps returning the same batch. The engine then simulates such stretches of
        iterations in one step; results are identical, only faster."""
        return False


class RouterPolicy(ABC):
    """Chooses the replica that receives an arriving request."""

    Params = PolicyParams

    def __init__(self, params: PolicyParams) -> None:
        self.params = params

    @abstractmethod
    def route(self, request: RequestView, replicas: Sequence[ReplicaView], now: float) -> int:
        """Index into `replicas` of the chosen replica."""
