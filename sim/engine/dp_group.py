"""The data-parallel ranks of one MoE engine, stepping in lockstep.

With vLLM's `--data-parallel-size N --enable-expert-parallel` every MoE layer gathers the tokens of
all N ranks and runs its experts split over them, so the ranks run each forward step together
(vLLM's `DPEngineCoreProc`): a step lasts as long as the slowest rank's, a rank with nothing to
do runs a dummy batch (`execute_dummy_batch`, one token) while any rank has work, and before each
step the ranks all-reduce their token counts (`coordinate_batch_across_dp`) and, when the step
can run as a CUDA graph on every rank, pad their batches to the largest rank's token count.

Each replica plans its own batch as usual; instead of timing it alone it hands the plan to the
group (`DataParallelGroup.step`) and resumes when the group's step ends. The group starts a step
once every rank that is not idle has handed in its plan; idle ranks run the dummy batch. A rank
woken from idle during a step joins at the next step boundary.
"""
from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import simpy

from servesim.hwmodels import BatchShape, CostModel
from servesim.hwmodels.expert_parallel import DataParallelExpertCostModel, exchanged_tokens
from servesim.sim.engine.overheads import EngineOverheadCostModel

DP_SYNC_S = 6.3e-6
"""The per-step synchronisation: an all-reduce of a [4, N] int32 tensor (each rank's token count,
padded count, micro-batching flag and CUDA-graph mode). Priced as the smallest all-reduce
AIConfigurator measured across 2 GPUs on the RTX PRO 6000 (NCCL, 256 bytes: 6.3 us; its
`nccl_perf`). The all-reduce of the ranks' "unfinished" flag runs only every 32 steps and is as
small, so it is left out."""

DUMMY_BATCH = BatchShape((1,), (1,))
"""What an idle rank runs while another rank works: one dummy token (vLLM `_dummy_run(1)`)."""

_Wrapped = TypeVar("_Wrapped", bound=CostModel)


@dataclass(frozen=True, slots=True)
class RankPlan:
    """One rank's share of a step: its batch and the swap copies it does first."""

    shape: BatchShape
    swap_s: float = 0.0


def _find(cost_model: CostModel, kind: type[_Wrapped]) -> _Wrapped | None:
    """The `kind` model inside `cost_model` or one it wraps (`inner`), if any."""
    model: CostModel | None = cost_model
    while model is not None:
        if isinstance(model, kind):
            return model
        model = getattr(model, "inner", None)
    return None


def padded_to(shape: BatchShape, num_tokens: int) -> BatchShape:
    """`shape` with decode slots of its shortest context added up to `num_tokens` (DP padding)."""
    extra = num_tokens - shape.num_tokens
    if extra <= 0:
        return shape
    shortest = max(1, min(shape.context_lens))
    return BatchShape(shape.new_tokens + (1,) * extra, shape.context_lens + (shortest,) * extra)


class LockstepPricing:
    """A lockstep step's seconds from every rank's batch (None: the rank is idle and runs a dummy batch).

    Each rank is priced by the replicas' own cost model on its batch; when every rank's tokens fit
    the largest CUDA graph, every batch is first padded to the largest rank's tokens (vLLM pads
    only when the step runs as a graph on every rank). The experts then see the tokens all ranks
    gathered (`DataParallelExpertCostModel.regathered_s`), and their all-gather and reduce-scatter
    last as long as the busiest link's share of them (`exchanged_tokens`: unequal batches move
    the largest rank's tokens through the smallest rank's link). The ranks take the lowest
    CUDA-graph mode among them (`coordinate_batch_across_dp`), so when one rank's step does not
    run as a full graph, every rank pays the host time of a step launched layer by layer. The
    step is the slowest rank's time plus the DP synchronisation.
    """

    def __init__(self, cost_model: CostModel) -> None:
        self.cost_model = cost_model
        self.split = _find(cost_model, DataParallelExpertCostModel)
        self.graphs = _find(cost_model, EngineOverheadCostModel)
        sizes = self.graphs.capture_sizes if self.graphs is not None else None
        self.max_graph_tokens = int(sizes[-1]) if sizes is not None and len(sizes) else 0

    def rank_shapes(self, plans: Sequence[RankPlan | None]) -> list[BatchShape]:
        """Every rank's batch as it runs: dummy batches for idle ranks, DP padding applied."""
        shapes = [DUMMY_BATCH if plan is None else plan.shape for plan in plans]
        largest = max(shape.num_tokens for shape in shapes)
        if self.max_graph_tokens and largest <= self.max_graph_tokens:
            shapes = [padded_to(shape, largest) for shape in shapes]
        return shapes

    def step_s(self, plans: Sequence[RankPlan | None]) -> float:
        shapes = self.rank_shapes(plans)
        graphs = self.graphs
        seen = [(graphs.graph_padded(shape) if graphs is not None else shape).num_tokens for shape in shapes]
        gathered = sum(seen)
        exchanged = exchanged_tokens(seen)
        eager = graphs is not None and not all(graphs.runs_as_graph(shape) for shape in shapes)
        slowest = 0.0
        for plan, shape, num_tokens in zip(plans, shapes, seen, strict=True):
            seconds = self.cost_model.iteration_time(shape) + (plan.swap_s if plan is not None else 0.0)
            if eager and graphs is not None:  # the ranks agree on the lowest graph mode: none runs a full graph
                seconds += graphs.per_eager_iteration_s - graphs.eager_s(shape)
            if self.split is not None:
                seconds += self.split.regathered_s(num_tokens, gathered, exchanged)
            slowest = max(slowest, seconds)
        return slowest + DP_SYNC_S


class DataParallelGroup:
    """Starts a step when every busy rank has planned it, and ends it for all of them together."""

    def __init__(self, env: simpy.Environment, pricing: LockstepPricing) -> None:
        self.env = env
        self.pricing = pricing
        self.num_ranks = 0
        self.num_steps = 0
        self.num_dummy_rank_steps = 0
        """Rank-steps run as a dummy batch (an idle rank beside a busy one)."""
        self._active = 0
        """Ranks not idle: each will hand in a plan or go idle before the next step starts."""
        self._plans: dict[int, RankPlan] = {}
        self._boundary = env.event()
        """Fires when the step being formed (or running) ends."""
        self._in_flight = False

    def join(self) -> int:
        """A new rank (active until its loop first finds nothing to do); returns its index."""
        self.num_ranks += 1
        self._active += 1
        return self.num_ranks - 1

    def step(self, rank: int, plan: RankPlan) -> Generator[simpy.Event, Any, None]:
        """Hand in `rank`'s plan and wait for the end of the step that runs it."""
        self._plans[rank] = plan
        boundary = self._boundary
        self._start_if_ready()
        yield boundary

    def rest(self, sleep: simpy.Event) -> Generator[simpy.Event, Any, None]:
        """A rank is idle until `sleep` fires; if a step is running then, it joins at that step's end."""
        self._active -= 1
        self._start_if_ready()
        yield sleep
        self._active += 1
        if self._in_flight:
            yield self._boundary

    def _start_if_ready(self) -> None:
        if self._in_flight or not self._plans or len(self._plans) < self._active:
            return
        plans = [self._plans.get(rank) for rank in range(self.num_ranks)]
        self._plans = {}
        self._in_flight = True
        self.num_steps += 1
        self.num_dummy_rank_steps += plans.count(None)
        self.env.timeout(self.pricing.step_s(plans)).callbacks.append(self._end_step)

    def _end_step(self, event: simpy.Event) -> None:
        ended, self._boundary = self._boundary, self.env.event()
        self._in_flight = False
        ended.succeed()

    def describe(self) -> dict[str, int]:
        return {"ranks": self.num_ranks, "steps": self.num_steps, "dummy_rank_steps": self.num_dummy_rank_steps}


def lockstep_group(env: simpy.Environment, cost_model: CostModel) -> DataParallelGroup | None:
    """The lockstep group for replicas priced with their experts split across them, else None."""
    if _find(cost_model, DataParallelExpertCostModel) is None:
        return None
    return DataParallelGroup(env, LockstepPricing(cost_model))
