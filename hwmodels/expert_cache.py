"""Expert offloading: only `resident` experts of each MoE layer stay in device memory, the rest
live in host memory and a miss copies the expert's weights over the host link before it runs.

The cache is LRU (ExpertFlow, He et al. 2024, and vLLM/SGLang CPU-offload paths evict the least
recently used expert). Its hit rate is estimated in closed form, so that a batch shape always has
one cost (memoised costs, fast-forward and stepping agree):

- Routing locality (Liang et al. 2025, "the MoE local routing consistency" study): with
  probability `locality` a token's expert choice repeats its previous step's, which the previous
  step just used, so it is resident; the other choices are fresh draws from the popularity.
- A fresh choice of expert e hits with Che's approximation of LRU under independent references
  (Che, Tung and Wang 2002): e is resident with probability 1 - exp(-p_e T_C), where the
  characteristic time T_C solves sum_e (1 - exp(-p_e T_C)) = resident.
- A layer whose batch touches more distinct experts than it can hold misses at least the excess.

So a layer's expected misses for a batch of t tokens are
max(touched(t) - resident, sum_e (1 - (1 - (1 - locality) c_e)^t) exp(-p_e T_C)), with c_e the
chance one token picks e. Loads are not overlapped with compute (no prefetch): each miss adds its
copy time to the layer, the cautious end of what ExpertFlow reports.
"""
from __future__ import annotations

import numpy as np

from servesim.hwmodels.moe_routing import ExpertRouting, touched_per_expert

_CHE_ITERATIONS = 200


class ExpertCacheEstimate:
    """Expected expert misses per MoE layer for a batch of `tokens`, for `resident` experts per layer."""

    def __init__(self, routing: ExpertRouting, resident: int, locality: float) -> None:
        if not 1 <= resident < routing.num_experts:
            raise ValueError(f"resident experts must be in 1..{routing.num_experts - 1}, got {resident}")
        if not 0 <= locality <= 1:
            raise ValueError(f"locality must be in [0, 1], got {locality}")
        self.routing, self.resident, self.locality = routing, resident, locality
        self.resident_probability = che_resident_probability(routing.popularity, resident)
        self._fresh_choice = (1.0 - locality) * routing.choice

    def misses(self, tokens: float | np.ndarray) -> float | np.ndarray:
        """Expected experts one layer loads from host memory for a batch of `tokens` (layer mean)."""
        fresh_misses = touched_per_expert(tokens, self._fresh_choice) * (1.0 - self.resident_probability)
        estimate = fresh_misses.sum(axis=-1).mean(axis=-1)
        excess = np.asarray(self.routing.touched(tokens)) - self.resident
        result = np.maximum(estimate, excess)
        return float(result) if np.ndim(tokens) == 0 else result

    def describe(self) -> dict[str, object]:
        return {"gpu_experts": self.resident, "policy": "lru", "locality": self.locality}


def che_resident_probability(popularity: np.ndarray, resident: int) -> np.ndarray:
    """Per expert (rows: layers), the probability LRU holds it: 1 - exp(-p T_C), T_C solving
    sum_e (1 - exp(-p_e T_C)) = resident (found by bisection on log T_C: the sum rises with T_C)."""
    popularity = np.atleast_2d(popularity)
    low = np.full(popularity.shape[0], -30.0)
    high = np.full(popularity.shape[0], 60.0)
    for _ in range(_CHE_ITERATIONS):
        middle = (low + high) / 2
        held = (1.0 - np.exp(-popularity * np.exp(middle)[:, None])).sum(axis=1)
        below = held < resident
        low = np.where(below, middle, low)
        high = np.where(below, high, middle)
    return 1.0 - np.exp(-popularity * np.exp((low + high) / 2)[:, None])
