"""The network's part of a run's results: the `network` summary block and `links.parquet`.

Both are written only for runs whose network carried a transfer (single-pool runs have none).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from servesim.sim.network.network import Network

LINK_COLUMNS = ("time_s", "link", "direction", "utilisation", "flows")


def has_traffic(network: Network) -> bool:
    return network.counts.num_transfers > 0


def network_summary(network: Network, end_s: float | None = None) -> dict[str, Any]:
    """Totals (bytes sent = bytes received once every transfer ended) and, per link and direction,
    the bytes it carried, the share of the run (to `end_s`, default now) it was busy, and its peak utilisation."""
    now = network.now if end_s is None else end_s
    links = {
        f"{stats.name}/{stats.direction}": {
            "bytes": stats.bytes,
            "busy_share": stats.busy_until(now) / now if now > 0 else 0.0,
            "peak_utilisation": stats.peak_utilisation,
        }
        for stats in network.link_stats()
    }
    return {**network.totals(), "bytes_by_tag": dict(network.counts.sent), "links": links}


def link_series(network: Network) -> pd.DataFrame:
    """One row per change of a link's load: from `time_s` on it carries `flows` at `utilisation`."""
    rows = network.utilisation_rows()
    return pd.DataFrame(rows, columns=list(LINK_COLUMNS)).astype(
        {"time_s": "float64", "link": "string", "direction": "string", "utilisation": "float64", "flows": "int64"})


def write_link_series(network: Network, path: Path) -> None:
    link_series(network).to_parquet(path, index=False)
