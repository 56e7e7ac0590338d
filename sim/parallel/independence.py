"""Whether a run's replicas are independent: every reason they are not, named by its config key.

Conservative: only what is known to keep replicas apart passes; any other feature counts as a
coupling until it is shown not to be one.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from servesim.policies import create_policy

if TYPE_CHECKING:
    from servesim.sim.runner import PreparedRun


def coupling_reasons(prepared: PreparedRun) -> list[str]:
    """Why the replicas of `prepared` cannot be simulated apart (empty: they can)."""
    config = prepared.config
    reasons = []
    num_replicas = sum(pool.spec.replicas for pool in prepared.pools)
    if num_replicas < 2:
        reasons.append(f"there is {num_replicas} replica, nothing to split")
    if config.cluster.pools is not None:
        reasons.append("cluster.pools: replicas of several pools are simulated together (KV transfers, role "
                       "switching, per-pool summaries)")
    if prepared.topology is not None and config.cluster.pools is None:
        reasons.append("cluster.topology: the replicas' swaps share one network, whose links and summary "
                       "(`links.parquet`, summary `network`) cover the whole run")
    router = config.cluster.router
    if create_policy("router", router.name, router.params()).depends_on_replicas:
        reasons.append(f"cluster.router: {router.name} reads the replicas' state to route; only a router whose "
                       "choice depends on the arrivals alone (round_robin) lets them run apart")
    if config.workload.clients is not None:
        reasons.append("workload.clients: a closed-loop client sends its next request when its previous one "
                       "finishes, on whichever replica served it")
    if config.cluster.parallel.ep_across_replicas:
        reasons.append("cluster.parallel.ep_across_replicas: the replicas step in data-parallel lockstep")
    if config.engine.intra_gpu_split is not None:
        reasons.append("engine.intra_gpu_split: not yet shown to keep replicas apart")
    if any(pool.expert_traffic is not None for pool in prepared.pools):
        reasons.append(f"model: {prepared.model.name} is a MoE model, whose expert traffic (summary `moe`) is "
                       "summed over all replicas in the order of their iterations")
    if any(pool.cost_model.describe().get("kind") == "table" for pool in prepared.pools):
        reasons.append("cost_model: cost tables report their lookups off the grid (summary "
                       "run.cost_model.out_of_grid) in the order the whole run makes them")
    if config.output.per_token:
        reasons.append("output.per_token: tokens.parquet takes each request's tokens in the order requests end "
                       "across the whole run, which worker processes cannot merge yet")
    return reasons
