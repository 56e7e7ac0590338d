"""The candidates of a placement search: every cluster shape the `plan:` block allows on its GPU budget.

A unified candidate is `replicas x (tp, pp)`; a disaggregated one is a prefill pool and a decode
pool, each `replicas x (tp, pp)` of its own, as DistServe searches them (Zhong et al., OSDI 2024,
section 4). Each candidate is the base config with its `cluster` reshaped (the `plan:` block
removed), as plain data: it is validated later, so a shape the config model refuses is reported
in the table like one that does not fit in memory.
"""
from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from servesim.sim.errors import ConfigError
from servesim.sim.experiment.config import ExperimentConfig, PlanConfig

MAX_CANDIDATES = 2000  # each is a goodput search of several simulations
PLAN_KEYS = ("plan", "sweep", "variants", "claim", "claims")  # not carried into a candidate's config


@dataclass(frozen=True)
class PoolShape:
    """One pool of a candidate: its role, the parallel plan of each replica, and how many replicas."""

    role: str
    tp: int
    pp: int
    replicas: int

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.replicas

    def describe(self) -> str:
        plan = f"tp{self.tp}" + (f"pp{self.pp}" if self.pp > 1 else "")
        return f"{self.role} {self.replicas} x {plan}"


@dataclass(frozen=True)
class Candidate:
    """One cluster shape: `c000`, its pools (one unified, or prefill then decode) and its config data."""

    name: str
    mode: str
    pools: tuple[PoolShape, ...]
    data: dict[str, Any]

    @property
    def gpus(self) -> int:
        return sum(pool.gpus for pool in self.pools)

    @property
    def label(self) -> str:
        return " + ".join(pool.describe() for pool in self.pools)


def pool_shapes(plan: PlanConfig, role: str, max_gpus: int) -> Iterator[PoolShape]:
    """Every (tp, pp, replicas) of one pool within `max_gpus`, by tp, then pp, then replicas."""
    for tp, pp in itertools.product(sorted(plan.tp), sorted(plan.pp)):
        for replicas in range(1, max_gpus // (tp * pp) + 1):
            yield PoolShape(role, tp, pp, replicas)


def shapes(plan: PlanConfig) -> list[tuple[str, tuple[PoolShape, ...]]]:
    """Every candidate's mode and pools, unified ones first, within (or, with use_all_gpus, exactly on) the budget."""
    found: list[tuple[str, tuple[PoolShape, ...]]] = []
    if "unified" in plan.modes:
        found += [("unified", (pool,)) for pool in pool_shapes(plan, "unified", plan.gpus)]
    if "disaggregated" in plan.modes:
        for prefill in pool_shapes(plan, "prefill", plan.gpus - 1):
            found += [("disaggregated", (prefill, decode))
                      for decode in pool_shapes(plan, "decode", plan.gpus - prefill.gpus)]
    if plan.use_all_gpus:
        found = [(mode, pools) for mode, pools in found if sum(p.gpus for p in pools) == plan.gpus]
    return found


def candidates(config: ExperimentConfig) -> list[Candidate]:
    """The candidates of `config.plan`, named `c000`, ... in the order of `shapes`."""
    plan = config.plan
    if plan is None:
        raise ConfigError(f"config {config.name!r} has no `plan:` block; add one such as `plan: {{gpus: 8}}` "
                          "(see the README's Placement search section)")
    found = shapes(plan)
    if not found:
        raise ConfigError(f"plan: no candidate uses exactly plan.gpus={plan.gpus} GPUs with tp {plan.tp} and pp "
                          f"{plan.pp}; drop plan.use_all_gpus or change the degrees")
    if len(found) > MAX_CANDIDATES:
        raise ConfigError(f"plan: {len(found):,} candidates, more than the {MAX_CANDIDATES:,} a search runs; narrow "
                          "plan.tp, plan.pp or plan.modes, or set plan.use_all_gpus: true")
    base = config.model_dump(mode="json", exclude=set(PLAN_KEYS), exclude_none=True)
    width = max(3, len(str(len(found) - 1)))
    named = []
    for index, (mode, pools) in enumerate(found):
        name = f"c{index:0{width}d}"
        data = cluster_data(base, pools)
        data["name"] = f"{config.name}/{name}"
        named.append(Candidate(name, mode, pools, data))
    return named


def cluster_data(base: dict[str, Any], pools: tuple[PoolShape, ...]) -> dict[str, Any]:
    """The base config data with its cluster reshaped to `pools`.

    Everything else is kept: the router, the transfer policy, the other `parallel` keys, and, where
    the base config has pools, the settings of its first pool of each role (hardware, scheduler,
    memory), so a search can keep, say, its decode pool on other hardware than its prefill pool.
    """
    data = copy.deepcopy(base)
    cluster = data.setdefault("cluster", {})
    parallel = cluster.pop("parallel", {})
    cluster.pop("replicas", None)
    by_role: dict[str, dict[str, Any]] = {}
    for pool in cluster.pop("pools", None) or []:
        by_role.setdefault(pool.get("role", "unified"), pool)
    if len(pools) == 1 and pools[0].role == "unified" and not by_role:
        cluster["replicas"] = pools[0].replicas
        cluster["parallel"] = {**parallel, "tp": pools[0].tp, "pp": pools[0].pp}
        return data
    cluster["pools"] = [_pool_data(pool, by_role.get(pool.role, {}), parallel) for pool in pools]
    return data


def _pool_data(pool: PoolShape, settings: dict[str, Any], parallel: dict[str, Any]) -> dict[str, Any]:
    """One generated pool: the base pool's settings of its role, with this shape's count and plan."""
    kept = {key: value for key, value in settings.items() if key not in ("name", "role", "replicas", "parallel")}
    plan = {**parallel, **settings.get("parallel", {}), "tp": pool.tp, "pp": pool.pp}
    return {"name": pool.role, "role": pool.role, "replicas": pool.replicas, **kept, "parallel": plan}
