"""Max-min fair rates of flows over links of fixed capacity, by progressive filling.

Every flow's rate rises together until some link is full; the flows through that link are frozen
at its fair share and the filling goes on for the rest. The result is the unique max-min fair
allocation: no flow can get more without taking from a flow that has no more than it.

A link's fair share (capacity left / flows not yet frozen) never falls as flows freeze at the
smallest share, so a heap of shares with stale entries skipped finds each next bottleneck:
O(F x P x log) for F flows of P links each, instead of rescanning every link per step.
"""
from __future__ import annotations

import heapq
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

Link = TypeVar("Link", bound=Hashable)


def max_min_rates(paths: Sequence[Sequence[Link]], capacity: Mapping[Link, float]) -> list[float]:
    """The rate of each flow (bytes/s); `paths[i]` are the links flow i crosses (at least one)."""
    rates = [0.0] * len(paths)
    flows_on: dict[Link, list[int]] = {}
    for flow, path in enumerate(paths):
        if not path:
            raise ValueError(f"flow {flow} crosses no link; a flow within one device has no rate")
        for link in path:
            flows_on.setdefault(link, []).append(flow)
    order = {link: index for index, link in enumerate(flows_on)}  # ties broken by first use: deterministic
    left = {link: float(capacity[link]) for link in flows_on}
    unfrozen = {link: len(flows) for link, flows in flows_on.items()}
    heap = [(left[link] / unfrozen[link], order[link], link) for link in flows_on]
    heapq.heapify(heap)
    frozen = [False] * len(paths)
    while heap:
        share, _, bottleneck = heapq.heappop(heap)
        if not unfrozen[bottleneck] or share != left[bottleneck] / unfrozen[bottleneck]:
            continue  # a link with no flows left, or a stale entry (a newer, larger share is queued)
        for flow in flows_on[bottleneck]:
            if frozen[flow]:
                continue
            frozen[flow] = True
            rates[flow] = share
            for link in paths[flow]:
                left[link] = max(0.0, left[link] - share)
                unfrozen[link] -= 1
                if link != bottleneck and unfrozen[link]:
                    heapq.heappush(heap, (left[link] / unfrozen[link], order[link], link))
    return rates
