"""The cluster's pools, resolved: each pool's role, replicas, hardware, plan, scheduler and memory.

A config names its pools under `cluster.pools`, or gives `cluster.replicas`/`parallel` as before;
the latter is one unified pool named "default", so the engine always serves a list of pools.
A pool's unset keys take the top-level sections' values (memory key by key). The rules a list of
pools must keep (unique names, a role with instances, prefill with decode) are checked here when
the config is validated, each problem naming the pool and its key.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

if TYPE_CHECKING:
    from servesim.sim.experiment.config import (
        ExperimentConfig,
        MemoryConfig,
        ParallelConfig,
        PolicySpec,
        PoolConfig,
    )

DEFAULT_POOL = "default"
ENTRY_ROLES = ("unified", "prefill")
"""Roles whose replicas take arrivals from the router (decode replicas take prefilled requests)."""


@dataclass(frozen=True)
class ResolvedPool:
    """One pool with every key filled in; `key` is where its settings live in the config (for errors)."""

    name: str
    role: str
    replicas: int
    hardware: str
    parallel: ParallelConfig
    scheduler: PolicySpec
    memory: MemoryConfig
    key: str

    @property
    def is_entry(self) -> bool:
        return self.role in ENTRY_ROLES


def pool_key(name: str) -> str:
    return f"cluster.pools[{name}]"


def resolved_pools(config: ExperimentConfig) -> tuple[ResolvedPool, ...]:
    """The config's pools in config order; without `cluster.pools`, the one unified pool "default"."""
    cluster = config.cluster
    if cluster.pools is None:
        return (ResolvedPool(DEFAULT_POOL, "unified", cluster.replicas, config.hardware, cluster.parallel,
                             config.scheduler, config.memory, "cluster"),)
    return tuple(
        ResolvedPool(pool.name, pool.role, pool.replicas, pool.hardware or config.hardware, pool.parallel,
                     pool.scheduler or config.scheduler, pool_memory(config.memory, pool), pool_key(pool.name))
        for pool in cluster.pools
    )


def is_disaggregated(config: ExperimentConfig) -> bool:
    """Whether any pool prefills for another (the run then moves KV between pools)."""
    return any(pool.role == "prefill" for pool in config.cluster.pools or ())


def pool_memory(memory: MemoryConfig, pool: PoolConfig) -> MemoryConfig:
    """The top-level `memory` with the pool's own keys replacing its values; a ValueError names the key."""
    if not pool.memory:
        return memory
    try:
        return type(memory).model_validate({**memory.model_dump(), **pool.memory})
    except ValidationError as exc:
        shown = "; ".join(f"{pool_key(pool.name)}.memory.{'.'.join(str(p) for p in err['loc'])}: "
                          f"{err['msg'].removeprefix('Value error, ')}" for err in exc.errors())
        raise ValueError(shown) from None


def pool_problems(pools: Sequence[PoolConfig]) -> list[str]:
    """Every reason this list of pools cannot serve (duplicate names, roles without instances)."""
    problems: list[str] = []
    names = [pool.name for pool in pools]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        problems.append(f"cluster.pools: pool names must be unique; {', '.join(duplicates)} appear(s) twice")
    if not pools:
        problems.append("cluster.pools: the list is empty; give at least one pool (or use cluster.replicas)")
    problems += [f"{pool_key(p.name)}.replicas: a {p.role} pool needs at least one replica, got 0 (remove the pool "
                 "or give it replicas)" for p in pools if p.replicas == 0]
    problems += [f"{pool_key(p.name)}.parallel.ep_across_replicas: not supported in pools (a pool's replicas "
                 "are independent engines); set it to false" for p in pools if p.parallel.ep_across_replicas]
    roles = {p.role for p in pools}
    if "prefill" in roles and "decode" not in roles:
        prefill = next(p.name for p in pools if p.role == "prefill")
        problems.append(f"{pool_key(prefill)}.role: a prefill pool hands its requests to a decode pool, but no pool "
                        "has role decode; add one (or make this pool unified)")
    if "decode" in roles and "prefill" not in roles:
        decode = next(p.name for p in pools if p.role == "decode")
        problems.append(f"{pool_key(decode)}.role: a decode pool serves what a prefill pool hands over, but no pool "
                        "has role prefill; add one (or make this pool unified)")
    return problems


def pool_error(pool: ResolvedPool, message: str) -> str:
    """A preparation error about one pool, with its keys spelled where this pool's settings live."""
    if pool.key == "cluster":
        return message
    text = message.replace("cluster.parallel.", f"{pool.key}.parallel.").replace(" memory.", f" {pool.key}.memory.")
    for section in ("memory", "scheduler", "hardware"):
        if text.startswith(f"{section}:") or text.startswith(f"{section}."):
            return f"{pool.key}.{text}"
    return f"{pool.key}: {text}"


def describe(pool: ResolvedPool) -> dict[str, Any]:
    """The pool as the summary's `pools` block lists it (its counts are added by the runner)."""
    return {"role": pool.role, "replicas": pool.replicas, "hardware": pool.hardware,
            "parallel": {"tp": pool.parallel.tp, "pp": pool.parallel.pp}}
