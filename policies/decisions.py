"""What policies return: decisions that the engine's mechanisms apply."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from servesim.hwmodels.shapes import LayerSlice
from servesim.policies.views import IterationView, RequestView


class PreemptionMode(Enum):
    """How a preempted request gives up its device KV blocks."""

    RECOMPUTE = "recompute"
    SWAP = "swap"


@dataclass(slots=True)
class ScheduleDecision:
    """One iteration's plan.

    `preempted` running requests are evicted first (in order); then `scheduled` entries run,
    each with the number of new tokens it computes (a waiting request is admitted by being
    scheduled). `padding` adds (new tokens, context) entries that cost time but belong to no
    request (static batching's padded slots). With nothing scheduled, `wake_at` asks to be
    consulted again at that time even if nothing happens (batching windows); `resume` instead
    continues a suspended iteration, which then runs alone. `layer_slices` (layered prefill, for
    a scheduler with `uses_layer_slices`) maps a scheduled request's id to the prompt work its
    entry stands for this iteration: the whole prompt through one group of layers, priced
    instead of the entry's tokens through every layer (its tokens still count as computed).
    """

    scheduled: list[tuple[RequestView, int]] = field(default_factory=list)
    preempted: list[RequestView] = field(default_factory=list)
    padding: list[tuple[int, int]] = field(default_factory=list)
    wake_at: float | None = None
    resume: IterationView | None = None
    layer_slices: dict[int, LayerSlice] = field(default_factory=dict)
