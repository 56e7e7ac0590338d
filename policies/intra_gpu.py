"""Intra-GPU split policies: how much of a device's SMs the prefill loop gets beside the decode loop.

With `engine.intra_gpu_split` a replica runs its prefill and its decode loop at the same time
on one device (`sim.engine.intra_gpu`). At the start of every iteration of either loop the
split policy answers one question: the prefill share of the SMs (the decode loop gets the
rest). It sees a `SplitView`: both loops' batches, the prompt tokens still queued, and a
predictor of both iterations' times at any share (`hwmodels.sm_share`: the diminishing-returns
curve and the bandwidth contention term). Like every policy it is testable with a hand-made view.
The built-in policies (`static`, `proactive`) are in `policies.splits`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from servesim.policies.base import Policy


@dataclass(frozen=True)
class SplitView:
    """What a split policy sees at the start of an iteration of either loop."""

    prefill_share: float
    """The current prefill share of the SMs."""
    prefill_tokens: int
    """New tokens of the prefill batch running or starting now (0: the prefill loop is idle)."""
    num_decodes: int
    """Requests in the decode batch running or starting now (0: the decode loop is idle)."""
    queued_prefill_tokens: int
    """Prompt tokens not yet computed: waiting requests' and unfinished prefills', this batch's included."""
    predict: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    """Prefill shares -> (prefill seconds, decode seconds) of the two batches' iterations at each
    share, with bandwidth contention when both run (an idle loop's seconds are 0)."""


class SplitPolicy(Policy, ABC):
    """Chooses the prefill share of a device's SMs (the decode loop gets the rest)."""

    @abstractmethod
    def prefill_share(self, split: SplitView, now: float) -> float:
        """A share from 0 to 1: above 0 when the prefill loop has a batch, below 1 when the decode loop has one."""
