"""The cost-model interface: batch shape -> per-operator times -> iteration time.

Every implementation (constant, roofline, profiled tables) answers the same three questions, so
the engine never knows which one it is talking to.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from servesim.hwmodels.operators import LAYER_OPERATORS
from servesim.hwmodels.shapes import BatchShape


@dataclass(frozen=True, slots=True)
class OperatorTime:
    """One operator of an iteration: its name, how many times it runs, and seconds per run."""

    name: str
    calls: int
    seconds_per_call: float

    @property
    def seconds(self) -> float:
        return self.calls * self.seconds_per_call


@dataclass(frozen=True, slots=True)
class IterationCost:
    """The per-operator breakdown of one iteration; `seconds` is the iteration time."""

    operators: tuple[OperatorTime, ...]

    @property
    def seconds(self) -> float:
        return sum(op.seconds for op in self.operators)

    def boundaries(self) -> np.ndarray:
        """Cumulative end times of every operator call, in execution order.

        The per-layer operators run layer after layer, so their calls interleave: each layer
        runs its share (seconds / layers) of every per-layer operator in order. An iteration can
        be interrupted only at these boundaries (operator-level preemption).
        """
        layered = [op for op in self.operators if op.name in LAYER_OPERATORS]
        if not layered:
            return np.cumsum([op.seconds for op in self.operators])
        first = next(i for i, op in enumerate(self.operators) if op.name in LAYER_OPERATORS)
        head = [op.seconds for op in self.operators[:first] if op.name not in LAYER_OPERATORS]
        tail = [op.seconds for op in self.operators[first:] if op.name not in LAYER_OPERATORS]
        layers = max(op.calls for op in layered)
        one_layer = np.array([op.seconds / layers for op in layered])
        pieces = np.concatenate([head, np.tile(one_layer, layers), tail])
        return np.cumsum(pieces)

    def by_operator(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for op in self.operators:
            totals[op.name] = totals.get(op.name, 0.0) + op.seconds
        return totals


class CostModel(ABC):
    """Predicts how long one iteration of a batch takes on one replica."""

    @abstractmethod
    def breakdown(self, batch: BatchShape) -> IterationCost:
        """Per-operator times of one iteration, in execution order."""

    def iteration_time(self, batch: BatchShape) -> float:
        """Seconds for one iteration; implementations memoise this, the engine's hot path."""
        return self.breakdown(batch).seconds

    def decode_stretch_times(self, context_lens: Sequence[int] | np.ndarray, num_steps: int, first_step: int = 0,
                             ) -> np.ndarray:
        """Times of `num_steps` consecutive decode-only iterations of one fixed set of requests.

        Step k (from `first_step`) decodes every request with context `context_lens + k`. A stretch
        of real decodes (every context at least 1) goes to `stretch_of_decodes_by_sum`, which
        models vectorise from the batch's size, context sum and shortest context alone (cheap, as
        the engine prices many short stretches); anything else, or a model without it, is priced
        step by step.
        """
        if num_steps <= 0:
            return np.empty(0)
        size = len(context_lens)
        if size:
            # Summed in Python: the engine passes a tuple, cheaper so than made into an array.
            shortest, context_sum = int(min(context_lens)), int(sum(context_lens))
            if shortest + first_step > 0:
                times = self.stretch_of_decodes_by_sum(size, context_sum + size * first_step, shortest + first_step,
                                                       num_steps)
                if times is not None:
                    return times
        return self._step_by_step(np.asarray(context_lens, dtype=np.int64) + first_step, num_steps)

    def stretch_of_decodes_by_sum(self, num_decodes: int, context_sum: int, shortest: int, num_steps: int,
                                  ) -> np.ndarray | None:
        """`decode_stretch_times` of `num_decodes` decodes whose contexts sum to `context_sum` at the
        first step, the shortest being `shortest` >= 1; None where the model cannot price it so
        (then it is priced step by step). Must equal pricing step by step on any such contexts."""
        return None

    def decodes_and_chunk_by_sum(self, num_decodes: int, decode_context_sum: int, chunk_tokens: int,
                                 chunk_context: int) -> float | None:
        """`iteration_time` of `num_decodes` decodes whose contexts sum to `decode_context_sum`,
        then one prefill chunk of `chunk_tokens` >= 2 tokens after `chunk_context` cached ones:
        chunked prefill's usual step, priced at each step of a prompt's chunks
        (`sim.engine.prompt_chunks`) without building its BatchShape. None where the model cannot
        price it so (the engine then builds the shape). Must equal `iteration_time` of any such batch."""
        return None

    def _step_by_step(self, contexts: np.ndarray, num_steps: int) -> np.ndarray:
        times = np.empty(num_steps)
        ones = (1,) * len(contexts)
        base = [int(c) for c in contexts]
        for k in range(num_steps):
            times[k] = self.iteration_time(BatchShape(ones, tuple(c + k for c in base)))
        return times

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What the run summary records about this cost model (kind, parameters, tables)."""


class ConstantCostModel(CostModel):
    """Iteration time = `iteration_s` + `per_token_s` x new tokens: for tests and queueing theory.

    With `per_token_s = 0` every iteration takes the same time, which makes timelines exact and
    lets single-server queueing formulas (M/D/1) be checked against the engine.
    """

    def __init__(self, iteration_s: float, per_token_s: float = 0.0) -> None:
        self.iteration_s = iteration_s
        self.per_token_s = per_token_s

    def breakdown(self, batch: BatchShape) -> IterationCost:
        return IterationCost(
            (
                OperatorTime("fixed", 1, self.iteration_s),
                OperatorTime("per_token", batch.num_tokens, self.per_token_s),
            )
        )

    def iteration_time(self, batch: BatchShape) -> float:
        return self.iteration_s + self.per_token_s * batch.num_tokens

    def stretch_of_decodes_by_sum(self, num_decodes: int, context_sum: int, shortest: int, num_steps: int,
                                  ) -> np.ndarray:
        return np.full(num_steps, self.iteration_s + self.per_token_s * num_decodes)

    def decodes_and_chunk_by_sum(self, num_decodes: int, decode_context_sum: int, chunk_tokens: int,
                                 chunk_context: int) -> float:
        return self.iteration_s + self.per_token_s * (num_decodes + chunk_tokens)

    def describe(self) -> dict[str, Any]:
        return {"kind": "constant", "iteration_s": self.iteration_s, "per_token_s": self.per_token_s}
