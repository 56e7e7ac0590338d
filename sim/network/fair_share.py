"""Max-min fair rates of flows over links of fixed capacity, by progressive filling.

Every flow's rate rises together until some link is full; the flows through that link are frozen
at its fair share and the filling goes on for the rest. The result is the unique max-min fair
allocation: no flow can get more without taking from a flow that has no more than it.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

Link = TypeVar("Link", bound=Hashable)


def max_min_rates(paths: Sequence[Sequence[Link]], capacity: Mapping[Link, float]) -> list[float]:
    """The rate of each flow (bytes/s); `paths[i]` are the links flow i crosses (at least one)."""
    rates = [0.0] * len(paths)
    users: dict[Link, set[int]] = {}
    for flow, path in enumerate(paths):
        if not path:
            raise ValueError(f"flow {flow} crosses no link; a flow within one device has no rate")
        for link in path:
            users.setdefault(link, set()).add(flow)
    left = {link: capacity[link] for link in users}
    while users:
        bottleneck = min(users, key=lambda link: left[link] / len(users[link]))
        share = left[bottleneck] / len(users[bottleneck])
        for flow in sorted(users[bottleneck]):
            rates[flow] = share
            for link in paths[flow]:
                left[link] = max(0.0, left[link] - share)
                users[link].discard(flow)
        users = {link: flows for link, flows in users.items() if flows}
    return rates
