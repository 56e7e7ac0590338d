"""A run with dynamic roles: its switches and its instances per pool and role over time.

`role_switches.parquet` has a row per completed switch; `role_counts.parquet` the number of
instances of each pool serving each role from `time_s` on. The summary's `role_switching` block
lists the switches and how long their drains took.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from servesim.sim.engine.role_switching import COUNT_COLUMNS, SWITCH_COLUMNS, RoleSwitcher
from servesim.sim.experiment.config import RoleSwitchingConfig
from servesim.sim.reporting.spill import typed_frame
from servesim.sim.reporting.summary import latency_block

_TEXT = ("pool", "from_role", "to_role", "role")
_INTS = ("replica", "num_replicas")
DTYPES = {name: "str" if name in _TEXT else "int64" if name in _INTS else "float64"
          for name in SWITCH_COLUMNS + COUNT_COLUMNS}


def write_role_tables(switcher: RoleSwitcher, directory: Path) -> dict[str, Path]:
    """The run's role switches and role counts as Parquet files in `directory`."""
    paths = {}
    for name, columns, rows in (("role_switches", SWITCH_COLUMNS, switcher.switches),
                                ("role_counts", COUNT_COLUMNS, switcher.counts)):
        path = directory / f"{name}.parquet"
        typed_frame(columns, DTYPES)(rows).to_parquet(path, index=False)
        paths[name] = path
    return paths


def role_switching_summary(settings: RoleSwitchingConfig, switcher: RoleSwitcher) -> dict[str, Any]:
    """The policy, each switch (when, which instance, from and to, its drain) and the roles at the end."""
    switches = [
        {"time_s": row[SWITCH_COLUMNS.index("switched_s")], "replica": row[0], "pool": row[1], "from": row[2],
         "to": row[3], "drain_s": row[SWITCH_COLUMNS.index("drain_s")]}
        for row in switcher.switches
    ]
    final: dict[str, dict[str, int]] = {}
    for replica in switcher.instances:
        roles = final.setdefault(replica.placement.pool, {})
        roles[replica.placement.role] = roles.get(replica.placement.role, 0) + 1
    return {
        "policy": settings.policy,
        "interval_s": settings.interval_s,
        "switch_s": settings.switch_s,
        "num_switches": len(switches),
        "num_unfinished": switcher.num_switching,
        "drain_s": latency_block(np.array([s["drain_s"] for s in switches], dtype=float)),
        "switches": switches,
        "final_roles": final,
    }
