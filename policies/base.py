"""The interfaces of each policy kind. Policies read views and `now`, and return decisions.

Every policy is constructed from its validated `Params` and a random generator of its own
(spawned from the experiment seed), so a policy that draws random numbers repeats exactly.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict

from servesim.policies.contract import checked_prediction, checked_victim
from servesim.policies.decisions import PreemptionMode, ScheduleDecision
from servesim.policies.views import IterationView, KvView, ReplicaView, RequestView


class PolicyParams(BaseModel):
    """Base for policy parameter models: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Policy:
    """What every policy has: its parameters and its own random generator."""

    Params: ClassVar[type[PolicyParams]] = PolicyParams

    def __init__(self, params: PolicyParams, rng: np.random.Generator | None = None) -> None:
        self.params = params
        self.rng = rng if rng is not None else np.random.default_rng(0)


class QueuePolicy(Policy, ABC):
    """Orders waiting requests; admission under budgets is the scheduler's job (as in SGLang)."""

    time_invariant: ClassVar[bool] = False
    """True if a request's key changes only with its own progress or with finished requests,
    never with time alone; then a scheduler using it may be fast-forwarded over decode stretches."""

    @abstractmethod
    def key(self, request: RequestView, replica: ReplicaView, now: float) -> Any:
        """Sort key: requests with smaller keys are considered first (ties keep arrival order)."""


class LengthPredictor(Policy, ABC):
    """Predicts a request's output length before it is known (for SJF, SRPT, admission)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "predict" in cls.__dict__ and not getattr(cls.__dict__["predict"], "__isabstractmethod__", False):
            cls.predict = checked_prediction(cls.__dict__["predict"])  # type: ignore[method-assign]

    @abstractmethod
    def predict(self, request: RequestView, replica: ReplicaView, now: float) -> float:
        """Predicted total output tokens of `request` (at least 1)."""


class PreemptionPolicy(Policy, ABC):
    """Chooses which running request gives up its KV memory when blocks run out, and how."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("select_victim")
        if own is not None and not getattr(own, "__isabstractmethod__", False):
            cls.select_victim = checked_victim(own)  # type: ignore[method-assign]

    @abstractmethod
    def select_victim(self, candidates: Sequence[RequestView], now: float) -> RequestView:
        """One of `candidates` (running, in admission order; never empty)."""

    def mode(self, victim: RequestView, host: KvView, now: float) -> PreemptionMode:
        """Recompute (the default) or swap `victim`'s KV to host memory (`host` has room?)."""
        return PreemptionMode.RECOMPUTE


class SchedulerPolicy(Policy, ABC):
    """Chooses the next iteration's batch from a replica's waiting and running requests."""

    def __init__(
        self, params: PolicyParams, preemption: PreemptionPolicy, rng: np.random.Generator | None = None
    ) -> None:
        super().__init__(params, rng)
        self.preemption = preemption

    uses_layer_slices: ClassVar[bool] = False
    """True if its decisions carry `layer_slices` (layered prefill): the engine then prices them."""

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

    @property
    def stable_while_waiting(self) -> bool:
        """False if, with requests waiting, the batch may change as decodes use up free blocks
        (as when a running request is preempted once the best waiting one no longer fits); the
        engine then fast-forwards only while nothing waits."""
        return True

    def interrupt(self, in_flight: IterationView, arrival: RequestView, replica: ReplicaView, now: float) -> bool:
        """Event-driven hook: should `arrival` stop the iteration in flight at its next operator
        boundary? Ordinary schedulers never interrupt (decisions at iteration boundaries only)."""
        return False


class EvictionPolicy(Policy, ABC):
    """Orders unreferenced cached KV blocks for eviction (as SGLang's strategies: a sort key)."""

    @abstractmethod
    def key(self, block: CachedBlock, now: float) -> Any:
        """Blocks with smaller keys are evicted first; computed when the block becomes free."""


class CachedBlock(NamedTuple):
    """A cached block at the moment it lost its last user (a tuple: cheap to build per block)."""

    block_id: int
    depth: int
    """Its position in the prompt (0 = first block): deeper blocks are less likely shared."""
    last_used_s: float
    num_hits: int
    """Times a request reused it from the cache."""


class RouterPolicy(Policy, ABC):
    """Chooses the replica that receives an arriving request."""

    @abstractmethod
    def route(self, request: RequestView, replicas: Sequence[ReplicaView], now: float) -> int:
        """Index into `replicas` of the chosen replica."""

    @property
    def reads_progress(self) -> bool:
        """True if `route` may read what changes while a replica decodes (its requests' progress,
        its KV blocks). False lets a replica in a decode stretch skip showing its state at every
        arrival: results are identical, only faster."""
        return True

    @property
    def depends_on_replicas(self) -> bool:
        """True if `route` may read the replicas' views (their load, memory, cache) or anything else
        that the replicas change. False promises that its choice depends only on the sequence of
        requests routed so far and the number of replicas: then replicas that nothing else couples
        can be simulated in separate processes (`simulation.workers`) with identical results."""
        return True


@dataclass(frozen=True, slots=True)
class TransferDecision:
    destination: int
    """Index of the receiving replica in `destinations`."""
    layerwise: bool
    """Stream KV layer group by layer group while the prefill runs, instead of after it."""
    layer_groups: int = 1
    """Layerwise: the groups of layers whose KV leaves together (each when its layers are computed)."""


class TransferPolicy(Policy, ABC):
    """Chooses where a prefill replica's request goes to decode, and how its KV moves there.

    Prefill/decode disaggregation (DistServe, Zhong et al., OSDI'24; Splitwise, Patel et al.,
    ISCA'24; Mooncake, Qin et al., FAST'25): the engine asks once per request, when its prefill
    starts on a replica of a prefill pool, with the views of that replica (`source`) and of
    every decode replica. The engine then reserves the KV blocks on the chosen replica (the
    request waits while it has too few free: back-pressure), moves the KV over the network, and
    the prefill replica frees its copy once the last byte arrives.
    """

    @abstractmethod
    def plan(self, request: RequestView, source: ReplicaView, destinations: Sequence[ReplicaView],
             now: float) -> TransferDecision:
        """Which of `destinations` decodes `request`, and whether its KV streams layer by layer."""
