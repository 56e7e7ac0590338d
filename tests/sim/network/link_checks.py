"""Checks every network test makes of a finished run's link accounting."""
from __future__ import annotations

from collections import defaultdict

import pytest

from servesim.sim.network import Network


def assert_loads_add_up(network: Network) -> None:
    """No link above its capacity, every link idle at the end, and each link's load integrated
    over time equal to the bytes it carried."""
    rows = network.utilisation_rows()
    assert all(0.0 <= row.utilisation <= 1.0 + 1e-9 for row in rows)
    series = defaultdict(list)
    for row in rows:
        series[(row.link, row.direction)].append(row)
    for stats in network.link_stats():
        samples = series[(stats.name, stats.direction)]
        assert samples[-1].flows == 0
        carried = sum(a.utilisation * stats.capacity_bytes_per_s * (b.time_s - a.time_s)
                      for a, b in zip(samples, samples[1:], strict=False))
        assert carried == pytest.approx(stats.bytes, rel=1e-6, abs=1.0)
