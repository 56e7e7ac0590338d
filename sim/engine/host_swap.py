"""Copying swapped KV blocks between a replica's devices and host memory over the run's network.

vLLM v0's worker copies a step's swap-ins, then its swap-outs, before the forward pass
(`Worker.cache_swap`: `swap_blocks` issues cudaMemcpyAsync on the compute stream), so a step that
swaps lasts its copies and then its kernels. A run without a network prices the copies at the
hardware entry's `host_link_gbps` and adds them to the iteration (`ReplicaSetup.swap_block_s`); a
run with one moves them as flows over the devices' host ports, where they share each port with
the other copies on it (`servesim.sim.network`).
"""
from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import simpy

from servesim.sim.network import Network

SWAP_TAG = "swap"
"""The network's tag for swap copies (`summary.json` `network.bytes_by_tag`)."""


@dataclass(frozen=True, slots=True)
class SwapCopies:
    """The KV blocks one step moves into device memory and out to host memory."""

    blocks_in: int
    blocks_out: int


@dataclass(frozen=True)
class HostPorts:
    """A replica's devices on the run's network; each holds `block_bytes` of every KV block (its shard)."""

    network: Network
    devices: tuple[int, ...]
    block_bytes: int

    def copy(self, copies: SwapCopies) -> Generator[simpy.Event, Any, None]:
        """Swap in, then swap out (one CUDA stream), each device its shard over its own host port."""
        per_block = self.block_bytes * len(self.devices)
        if copies.blocks_in:
            yield self.network.from_host(self.devices, copies.blocks_in * per_block, SWAP_TAG)
        if copies.blocks_out:
            yield self.network.to_host(self.devices, copies.blocks_out * per_block, SWAP_TAG)
