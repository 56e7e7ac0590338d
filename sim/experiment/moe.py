"""The `cost_model.moe` section resolved against the model and the parallel plan: the experts'
popularity, their EP placement and the expert cache, with every mistake a ConfigError naming
the key."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servesim.hwmodels.catalog import ModelSpec
from servesim.hwmodels.dtypes import weight_element_bytes
from servesim.hwmodels.expert_cache import ExpertCacheEstimate
from servesim.hwmodels.moe_routing import (
    ExpertRouting,
    popularity_from_counts,
    read_routing_trace,
    round_robin,
    uniform_popularity,
    zipf_popularity,
)
from servesim.hwmodels.shapes import ParallelPlan
from servesim.sim.errors import ConfigError
from servesim.sim.experiment.config import MoeConfig

MOE_SEED_KEY = 8
"""The key of the zipf shuffle's generator beside the experiment's other streams (see `runner.random_stream`)."""


@dataclass(frozen=True, eq=False)
class MoeSetup:
    """What the cost model and the expert-traffic meter need: popularity, placement, the cache."""

    config: MoeConfig
    popularity: np.ndarray
    experts_per_token: int
    placement_ranks: int
    """The EP degree `placement` is for: the widest plan's (replicas x tp with ep_across_replicas)."""

    def routing(self, ep: int) -> ExpertRouting:
        """The routing over `ep` ranks: the configured placement for the plan it is for, else (and
        for a DP rank's own plan, whose expert time the wide plan's replaces) round-robin."""
        placement = self.config.placement
        dealt = round_robin(self.popularity.shape[1], ep) if placement is None or ep != self.placement_ranks \
            else np.asarray(placement)
        return ExpertRouting(self.popularity, dealt, self.experts_per_token, ep, self._label())

    def cache(self, routing: ExpertRouting) -> ExpertCacheEstimate | None:
        offload = self.config.offload
        if offload is None:
            return None
        return ExpertCacheEstimate(routing, offload.gpu_experts, self.config.locality)

    def _label(self) -> str:
        if self.config.routing == "zipf":
            return f"zipf(s={self.config.zipf_s:g}, seed={self.config.seed})"
        return self.config.routing


def moe_setup(config: MoeConfig | None, model: ModelSpec, plans: list[ParallelPlan], base_dir: Path,
              kind: str) -> MoeSetup | None:
    """Check `cost_model.moe` against the model, the plans its experts run under and the cost model
    (`auto` then means the roofline: profiled tables carry their own routing)."""
    if config is None:
        return None
    if not model.is_moe:
        raise ConfigError(f"cost_model.moe: {model.name} is a dense model (no experts); remove the `moe` section "
                          "or choose a MoE model such as qwen3-30b-a3b or mixtral-8x7b")
    if kind in ("table", "constant"):
        raise ConfigError(f"cost_model.moe: prices the experts with the roofline, but cost_model.kind is {kind}; "
                          "set cost_model.kind: roofline or auto (profiled tables carry their own measured routing: "
                          "cost_model.moe_distribution)")
    experts = model.num_experts
    ranks = max(plan.ep for plan in plans)
    if config.placement is not None:
        if len(config.placement) != experts or max(config.placement) >= ranks:
            raise ConfigError(f"cost_model.moe.placement: give the EP rank (0..{ranks - 1}) of each of the "
                              f"{experts} experts of {model.name}, in expert order; got {len(config.placement)} "
                              f"entries, largest {max(config.placement, default=0)}")
    if config.offload is not None and config.offload.gpu_experts >= experts:
        raise ConfigError(f"cost_model.moe.offload.gpu_experts: {config.offload.gpu_experts} keeps every one of the "
                          f"{experts} experts of {model.name} on the device; use fewer, or remove `offload`")
    return MoeSetup(config, _popularity(config, model, base_dir), model.experts_per_token, ranks)


def _popularity(config: MoeConfig, model: ModelSpec, base_dir: Path) -> np.ndarray:
    if config.routing == "uniform":
        return uniform_popularity(model.num_experts)
    if config.routing == "zipf":
        rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(MOE_SEED_KEY,)))
        return zipf_popularity(model.num_experts, config.zipf_s, rng)
    assert config.trace is not None  # MoeConfig's validator: a trace exactly when routing is trace
    path = Path(config.trace)
    path = path if path.is_absolute() else base_dir / path
    try:
        counts = read_routing_trace(str(path), model.num_experts, model.num_moe_layers)
        return popularity_from_counts(counts)
    except OSError as exc:
        raise ConfigError(f"cost_model.moe.trace: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"cost_model.moe.trace: {exc}") from None


def offloaded_weight_bytes(model: ModelSpec, plan: ParallelPlan, setup: MoeSetup | None) -> int:
    """Device bytes the experts left in host memory free on the fullest pipeline stage."""
    if setup is None or setup.config.offload is None:
        return 0
    left_out = model.num_experts - setup.config.offload.gpu_experts
    per_layer = left_out * model.layer_params(plan.tp).expert * weight_element_bytes(model.weight_dtype)
    moe_layers = max(max(0, hi - max(lo, model.num_dense_layers)) for lo, hi in model.stage_layers(plan.pp))
    return math.floor(per_layer * moe_layers)
