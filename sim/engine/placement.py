"""Where a replica sits in the cluster: its pool, role, hardware, devices and nodes."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    """A replica's place; the defaults are the one unified pool of a config without `cluster.pools`."""

    pool: str = "default"
    role: str = "unified"
    hardware: str = ""
    devices: tuple[int, ...] = ()
    """Global device ids (the network's topology numbers them)."""
    nodes: tuple[int, ...] = ()
