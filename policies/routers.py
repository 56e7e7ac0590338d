"""Routers: which replica of a pool receives an arriving request.

Load-balancing routers pick the least loaded replica by some measure of load; affinity routers
prefer the replica that already holds the request's context (its session's previous turn, or the
longest cached prefix) unless that replica is too far above the least loaded one.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pydantic import Field

from servesim.policies.base import PolicyParams, RouterPolicy
from servesim.policies.registry import register
from servesim.policies.views import ReplicaView, RequestView, blocks_for


def least(replicas: Sequence[ReplicaView], load: Callable[[ReplicaView], float],
          among: Sequence[int] | None = None) -> int:
    """Index of the replica with the lowest `load` (ties: the lowest index), among `among` if given."""
    candidates = range(len(replicas)) if among is None else among
    return min(candidates, key=lambda i: (load(replicas[i]), i))


def outstanding_requests(replica: ReplicaView) -> int:
    return replica.num_outstanding


@register("router", "round_robin")
class RoundRobinRouterPolicy(RouterPolicy):
    """Send arrivals to the replicas in turn, ignoring their load (the usual baseline)."""

    def __init__(self, params: PolicyParams, rng: np.random.Generator | None = None) -> None:
        super().__init__(params, rng)
        self._next = 0

    @property
    def reads_progress(self) -> bool:
        return False

    @property
    def depends_on_replicas(self) -> bool:
        """Only the count of replicas and of earlier arrivals decide."""
        return False

    def route(self, request: RequestView, replicas: Sequence[ReplicaView], now: float) -> int:
        chosen = self._next % len(replicas)
        self._next = chosen + 1
        return chosen


@register("router", "least_outstanding")
class LeastOutstandingRouterPolicy(RouterPolicy):
    """Send each arrival to the replica with the fewest requests queued or running (ties: lowest id).

    Join-the-shortest-queue (Winston, 1977), the load balancing of the SGLang and vLLM routers.
    """

    @property
    def reads_progress(self) -> bool:
        """Requests outstanding change only when one arrives or ends, never while decoding."""
        return False

    def route(self, request: RequestView, replicas: Sequence[ReplicaView], now: float) -> int:
        return least(replicas, outstanding_requests)


def outstanding_tokens(replica: ReplicaView) -> int:
    return replica.outstanding_tokens


@register("router", "least_outstanding_tokens")
class LeastOutstandingTokensRouterPolicy(RouterPolicy):
    """Send each arrival to the replica with the fewest tokens left to serve: the prompt tokens
    not yet computed plus the output tokens not yet generated of every request queued or running
    there (ties: lowest id). Weighs requests by their work where `least_outstanding` counts them.

    Models Least-Work-Left (Harchol-Balter, Crovella and Murta, "On Choosing a Task Assignment
    Policy for a Distributed Server System", JPDC 1999), with tokens as the unit of work. It reads
    each request's true output length, as the policy assumes job sizes are known: an upper bound
    on what a deployed router, which knows at most the output budget, can do.
    """

    @property
    def reads_progress(self) -> bool:
        """Tokens left shrink with every decoded token."""
        return True

    def route(self, request: RequestView, replicas: Sequence[ReplicaView], now: float) -> int:
        return least(replicas, outstanding_tokens)


def kv_use(replica: ReplicaView) -> float:
    """Share of the KV pool in use, counting the blocks its queued requests need on admission
    (their tokens so far, without prefix-cache hits): what it will hold once its queue drains."""
    kv = replica.kv
    queued = sum(blocks_for(request.num_tokens, kv.block_size) for request in replica.waiting)
    return (kv.num_blocks - kv.num_free_blocks + queued) / max(kv.num_blocks, 1)


@register("router", "least_kv")
class LeastKvRouterPolicy(RouterPolicy):
    """Send each arrival to the replica with the lowest KV-cache use (ties: lowest id): used
    blocks plus the blocks its queue will need, over its capacity. Unreferenced cached prefix
    blocks count as free. Balancing memory rather than requests avoids preemptions on replicas
    of unequal memory or with long contexts.

    Models the KV-utilisation routing of Llumnix (Sun et al., OSDI 2024: load as the virtual
    usage of KV blocks, queued demand included) and AIBrix's `least-kv-cache`. It reads every
    queued request of every replica at each arrival: cheap unless queues grow long.
    """

    @property
    def reads_progress(self) -> bool:
        """Decoding requests take new blocks."""
        return True

    def route(self, request: RequestView, replicas: Sequence[ReplicaView], now: float) -> int:
        return least(replicas, kv_use)


@register("router", "power_of_two")
class PowerOfTwoRouterPolicy(RouterPolicy):
    """Sample two replicas at random (the router's own generator) and send the arrival to the one
    with fewer requests queued or running (ties: the first drawn).

    Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing", IEEE TPDS 2001: two
    random choices cut the maximum queue exponentially against one, while reading the load of
    only two replicas (a router in front of many replicas need not poll them all).
    """

    @property
    def reads_progress(self) -> bool:
        return False

    def route(self, request: RequestView, replicas: Sequence[ReplicaView], now: float) -> int:
        if len(replicas) == 1:
            return 0
        first, second = (int(i) for i in self.rng.choice(len(replicas), size=2, replace=False))
        return second if replicas[second].num_outstanding < replicas[first].num_outstanding else first


class BalanceParams(PolicyParams):
    """When an affinity router gives up affinity for load (SGLang's cache-aware router rule)."""

    balance_abs_threshold: int = Field(
        32, ge=0, description="affinity gives way when the preferred replica has more requests outstanding than "
        "the least loaded one by more than this, and by more than balance_rel_threshold times")
    balance_rel_threshold: float = Field(
        1.5, ge=1.0, description="affinity gives way when the preferred replica's requests outstanding exceed this "
        "times the least loaded one's, and by more than balance_abs_threshold")


def overloaded(load: int, least_load: int, params: BalanceParams) -> bool:
    """The preferred replica is too far above the least loaded: beyond both thresholds."""
    return load - least_load > params.balance_abs_threshold and load > least_load * params.balance_rel_threshold


@register("router", "session_affinity")
class SessionAffinityRouterPolicy(RouterPolicy):
    """Send each request of a session (conversation, agent program) to the replica that served its
    previous turn, where the previous turns' KV may still be cached; the first turn, requests
    without a session, and turns whose replica is overloaded (`balance_*`, in requests
    outstanding) go to the least loaded replica, which then serves the session.

    Models sticky sessions (routing by session id) of LLM gateways such as the vLLM production
    stack's session router, which keep a conversation where its previous turns' KV is cached.
    It remembers one replica per session seen, for the whole run.
    """

    Params = BalanceParams
    params: BalanceParams

    def __init__(self, params: PolicyParams, rng: np.random.Generator | None = None) -> None:
        super().__init__(params, rng)
        self._replica_of: dict[str, int] = {}

    @property
    def reads_progress(self) -> bool:
        return False

    def route(self, request: RequestView, replicas: Sequence[ReplicaView], now: float) -> int:
        least_loaded = least(replicas, outstanding_requests)
        session = request.session_id
        if session is None:
            return least_loaded
        previous = self._replica_of.get(session)
        if previous is not None and previous < len(replicas) and not overloaded(
                replicas[previous].num_outstanding, replicas[least_loaded].num_outstanding, self.params):
            return previous
        self._replica_of[session] = least_loaded
        return least_loaded


@register("router", "prefix_affinity")
class PrefixAffinityRouterPolicy(RouterPolicy):
    """Send each arrival to the replica whose prefix cache holds the longest prefix of its prompt
    (ties and no hit anywhere: the least loaded), unless that replica is overloaded against the
    least loaded one (`balance_*`, in requests outstanding); then to the least loaded.

    Models SGLang's cache-aware router (sgl-router: an approximate radix tree per worker, absolute
    and relative balance thresholds; RadixAttention is Zheng et al., NeurIPS 2024) and Preble
    (Srivatsa et al., ICLR 2025: prefix-aware placement balanced against load). Where SGLang's
    router approximates each worker's cache by what it routed there, this router asks each
    replica's cache what it would reuse now, so a prefix still being prefilled is not yet found.
    """

    Params = BalanceParams
    params: BalanceParams

    @property
    def reads_progress(self) -> bool:
        """Cache contents change as decoding requests take (and evict) blocks."""
        return True

    def route(self, request: RequestView, replicas: Sequence[ReplicaView], now: float) -> int:
        least_loaded = least(replicas, outstanding_requests)
        hits = [replica.kv.cached_prefix(request).num_tokens for replica in replicas]
        longest = max(hits)
        if longest == 0:
            return least_loaded
        preferred = least(replicas, outstanding_requests, [i for i, hit in enumerate(hits) if hit == longest])
        if overloaded(replicas[preferred].num_outstanding, replicas[least_loaded].num_outstanding, self.params):
            return least_loaded
        return preferred
