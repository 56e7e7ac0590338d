"""Which experts a MoE layer's tokens go to, and what that does to the most loaded EP rank.

The default roofline prices MoE layers for uniform routing over evenly loaded EP ranks. Real
routers are skewed: a few experts take much of the traffic (Zipf-like popularity), so the EP rank
holding them computes more and sets the layer's time while the others wait. `ExpertRouting`
holds each expert's popularity (per layer, or one row for every layer) and its EP rank, and gives
in closed form, for a batch of `t` tokens each choosing `experts_per_token` experts:

- `choice[e] = min(1, scale * p[e])`, summing to k: the probability a token picks expert e;
- expected (token, expert) pairs of a rank: `t * sum(choice[e] for e on the rank)`;
- expected distinct experts a rank touches (whose weights it reads): `sum(1 - (1 - choice[e])^t)`.

Expected values, not draws, so a batch shape always costs the same (memoised costs, fast-forward
and stepping agree). Uniform routing over round-robin placement gives exactly the balanced
formulas of `hwmodels.operators` (the touched experts E(1 - (1 - k/E)^t), t k / ep pairs a rank).
The layer's work is that of its most loaded rank, taken over pairs (compute) and touched experts
(weight bytes) separately, which is the rank a roofline max(FLOPs / rate, bytes / bandwidth) picks;
with a per-layer trace each layer's maximum is taken, then averaged over layers.
"""
from __future__ import annotations

import csv

import numpy as np

_BISECTION_STEPS = 100


class ExpertRouting:
    """Popularity of each expert (rows: layers, or one row for all; each row sums to 1) and the EP
    rank holding each expert; `label` says where the popularity came from."""

    def __init__(self, popularity: np.ndarray, placement: np.ndarray, experts_per_token: int, num_ranks: int,
                 label: str) -> None:
        popularity = np.atleast_2d(np.asarray(popularity, dtype=np.float64))
        if (popularity < 0).any() or not np.allclose(popularity.sum(axis=1), 1.0):
            raise ValueError("expert popularity must be non-negative with each row summing to 1")
        placement = np.asarray(placement, dtype=np.int64)
        num_experts = popularity.shape[1]
        if placement.shape != (num_experts,) or placement.min() < 0 or placement.max() >= num_ranks:
            raise ValueError(f"placement must give each of the {num_experts} experts a rank in 0..{num_ranks - 1}")
        self.popularity, self.placement = popularity, placement
        self.experts_per_token, self.num_ranks, self.label = experts_per_token, num_ranks, label
        self.choice = choice_probability(popularity, experts_per_token)
        """Probability that one token picks each expert (rows as `popularity`)."""
        self._ranks = np.zeros((num_experts, num_ranks))
        self._ranks[np.arange(num_experts), placement] = 1.0
        self._max_rank_choice = float((self.choice @ self._ranks).max(axis=1).mean())

    @property
    def num_experts(self) -> int:
        return int(self.popularity.shape[1])

    def max_rank_pairs(self, tokens: float | np.ndarray) -> float | np.ndarray:
        """Expected (token, expert) pairs on the most loaded rank, averaged over layers."""
        return tokens * self._max_rank_choice

    def max_rank_touched(self, tokens: float | np.ndarray) -> float | np.ndarray:
        """Expected distinct experts on the rank that touches most, averaged over layers."""
        per_rank = touched_per_expert(tokens, self.choice) @ self._ranks
        return _scalar_or_array(per_rank.max(axis=-1).mean(axis=-1), tokens)

    def touched(self, tokens: float | np.ndarray) -> float | np.ndarray:
        """Expected distinct experts a layer's `tokens` touch over all ranks, averaged over layers."""
        return _scalar_or_array(touched_per_expert(tokens, self.choice).sum(axis=-1).mean(axis=-1), tokens)

    def imbalance(self) -> float:
        """The most loaded rank's pairs over a balanced rank's (1: balanced)."""
        return self._max_rank_choice * self.num_ranks / self.experts_per_token

    def describe(self) -> dict[str, object]:
        return {"routing": self.label, "ep_ranks": self.num_ranks, "rank_imbalance": round(self.imbalance(), 4)}


def choice_probability(popularity: np.ndarray, experts_per_token: int) -> np.ndarray:
    """The chance one token picks each expert when it picks `experts_per_token` distinct ones:
    min(1, scale x popularity), the scale set so that each row sums to `experts_per_token` (an
    expert popular enough to be in every token's choice saturates at 1 and the rest of its share
    goes to the others, as top-k routing does). Found by bisection: the sum rises with the scale."""
    if ((popularity > 0).sum(axis=1) < experts_per_token).any():
        raise ValueError(f"every layer needs at least {experts_per_token} experts with a share > 0 (each token "
                         f"picks {experts_per_token} distinct ones)")
    low = np.full((popularity.shape[0], 1), float(experts_per_token))
    high = 1.0 / np.sort(popularity, axis=1)[:, [-experts_per_token]]  # puts the k most popular all at 1
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2
        below = np.minimum(1.0, middle * popularity).sum(axis=1, keepdims=True) < experts_per_token
        low, high = np.where(below, middle, low), np.where(below, high, middle)
    return np.minimum(1.0, high * popularity)


def touched_per_expert(tokens: float | np.ndarray, choice: np.ndarray) -> np.ndarray:
    """1 - (1 - choice)^t: the chance that `tokens` tokens pick each expert at least once; a
    trailing (layers, experts) block per token count."""
    t = np.asarray(tokens, dtype=np.float64)[..., None, None]
    return 1.0 - (1.0 - choice) ** t


def _scalar_or_array(values: np.ndarray, tokens: float | np.ndarray) -> float | np.ndarray:
    return float(values) if np.ndim(tokens) == 0 else values


def round_robin(num_experts: int, num_ranks: int) -> np.ndarray:
    """Expert e on rank e mod `num_ranks`: how vLLM and SGLang deal experts without a placement file."""
    return np.arange(num_experts) % num_ranks


def uniform_popularity(num_experts: int) -> np.ndarray:
    return np.full((1, num_experts), 1.0 / num_experts)


def zipf_popularity(num_experts: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Popularity proportional to 1 / rank^exponent, the ranks shuffled over experts by `rng` (which
    experts are hot is an accident of training, not of their index)."""
    weights = 1.0 / np.arange(1, num_experts + 1, dtype=np.float64) ** exponent
    return (rng.permutation(weights) / weights.sum())[None, :]


def popularity_from_counts(counts: np.ndarray) -> np.ndarray:
    """Rows of expert counts (per layer, or one global row) normalised to popularity."""
    counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    totals = counts.sum(axis=1, keepdims=True)
    if (totals <= 0).any():
        raise ValueError("every layer of a routing trace needs at least one routed token")
    return counts / totals


def read_routing_trace(path: str, num_experts: int, num_moe_layers: int) -> np.ndarray:
    """Expert counts from a routing trace CSV: `expert,count` rows (one global popularity) or
    `layer,expert,count` rows (layer 0 is the first MoE layer; every layer listed gets its own row,
    the others the sum of all layers). Experts not listed count 0. Errors name the row."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{path}: no rows; expected a header `expert,count` or `layer,expert,count`")
    columns = set(rows[0])
    per_layer = "layer" in columns
    if not {"expert", "count"} <= columns or columns - {"layer", "expert", "count"}:
        raise ValueError(f"{path}: columns are {', '.join(sorted(columns))}; expected expert,count or "
                         "layer,expert,count")
    counts = np.zeros((num_moe_layers if per_layer else 1, num_experts))
    for number, row in enumerate(rows, start=2):
        try:
            expert, count = int(row["expert"]), float(row["count"])
            layer = int(row["layer"]) if per_layer else 0
        except (TypeError, ValueError):
            raise ValueError(f"{path}: row {number}: expert and layer must be integers and count a number, "
                             f"got {dict(row)}") from None
        if not 0 <= expert < num_experts or not 0 <= layer < counts.shape[0] or not count >= 0 \
                or not np.isfinite(count):
            raise ValueError(f"{path}: row {number}: expert {expert} must be in 0..{num_experts - 1}, layer "
                             f"{layer} in 0..{counts.shape[0] - 1} and count a finite number >= 0")
        counts[layer, expert] += count
    if per_layer:
        listed = counts.sum(axis=1) > 0
        counts[~listed] = counts[listed].sum(axis=0)
    return counts
