"""One accelerator (or CPU) as the roofline and the memory model see it.

Units: memory in GiB, bandwidths in GB/s (1e9 bytes per second, per direction for links), peak
rates in TFLOPS (1e12 FLOP/s, dense), latency in microseconds.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

from servesim.hwmodels.dtypes import DTYPE_BYTES
from servesim.hwmodels.errors import CatalogError


class DeviceKind(str, Enum):
    """A str-valued enum (not `enum.StrEnum`, which needs Python 3.11); `str()` gives the value."""

    GPU = "gpu"
    CPU = "cpu"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class HardwareSpec:
    """Datasheet figures, and where the rates the device achieves come from.

    GPUs of a calibrated family get their achieved rates from the family's fitted efficiency
    curves (`hwmodels.efficiency`); `efficiency_source` says which. A device outside those
    families (the CPU) gives flat `compute_efficiency` / `memory_efficiency` shares of peak.

    `gemm_compute_efficiency` (by format) is a documented achieved share of peak for large GEMMs
    on this very device; it replaces the family curve's share for its GEMM-priced kernels, for a
    GPU without kernel tables whose family's share does not transfer (the ada curves come from the
    power-limited L40S; the RTX 4090 runs bf16 at half rate and reaches nearly its peak).

    `inter_node_link_gbps` / `inter_node_latency_us` are one device's own NIC between nodes (DGX
    style, one NIC per GPU), per direction; the network model (`sim.network`) uses them.

    `peer_link_gbps` is set for full-mesh topologies (MI300X): each peer is reached over one link
    of that bandwidth, so a collective over n devices gets at most n-1 of them.
    """

    name: str
    source: str
    kind: DeviceKind
    memory_gib: float
    memory_bandwidth_gbps: float
    peak_tflops: Mapping[str, float] = field(hash=False)
    devices_per_node: int
    intra_node_link_gbps: float
    host_link_gbps: float
    link_latency_us: float
    inter_node_link_gbps: float
    inter_node_latency_us: float
    efficiency_source: str
    peer_link_gbps: float | None = None
    compute_efficiency: float | None = None
    memory_efficiency: float | None = None
    gemm_compute_efficiency: Mapping[str, float] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        problems = [
            f"{key} must be > 0, got {getattr(self, key)}"
            for key in ("memory_gib", "memory_bandwidth_gbps", "devices_per_node", "intra_node_link_gbps",
                        "host_link_gbps", "inter_node_link_gbps")
            if getattr(self, key) <= 0
        ]
        problems += [f"{key} must be >= 0, got {getattr(self, key)}"
                     for key in ("link_latency_us", "inter_node_latency_us") if getattr(self, key) < 0]
        if self.peer_link_gbps is not None and self.peer_link_gbps <= 0:
            problems.append(f"peer_link_gbps must be > 0 when set, got {self.peer_link_gbps}")
        problems += [
            f"{key} must be in (0, 1], got {getattr(self, key)}"
            for key in ("compute_efficiency", "memory_efficiency")
            if getattr(self, key) is not None and not 0 < getattr(self, key) <= 1
        ]
        problems += [f"gemm_compute_efficiency.{dtype} must be a known format with a share in (0, 1], got {share}"
                     for dtype, share in (self.gemm_compute_efficiency or {}).items()
                     if dtype not in DTYPE_BYTES or not 0 < share <= 1]
        problems += [f"peak_tflops.{dtype}: unknown format (known: {sorted(DTYPE_BYTES)})"
                     for dtype in self.peak_tflops if dtype not in DTYPE_BYTES]
        problems += [f"peak_tflops.{dtype} must be > 0, got {rate}"
                     for dtype, rate in self.peak_tflops.items() if rate <= 0]
        if not self.peak_tflops:
            problems.append("peak_tflops must name at least one format")
        if problems:
            raise CatalogError(f"hardware {self.name!r}: " + "; ".join(problems))

    def peak_flops(self, dtype: str) -> float:
        """Dense peak FLOP/s in `dtype`; a CatalogError names the formats the device has."""
        if dtype not in self.peak_tflops:
            raise CatalogError(
                f"hardware {self.name!r} has no peak rate for {dtype!r}; it lists {sorted(self.peak_tflops)}"
            )
        return self.peak_tflops[dtype] * 1e12

    def with_link(self, gbps: float | None, latency_us: float | None) -> HardwareSpec:
        """This device in a box whose devices talk over another link (a user's measured or recorded
        interconnect); the given link replaces the entry's, peer links included."""
        if gbps is None and latency_us is None:
            return self
        return replace(self, intra_node_link_gbps=self.intra_node_link_gbps if gbps is None else gbps,
                       link_latency_us=self.link_latency_us if latency_us is None else latency_us,
                       peer_link_gbps=None if gbps is not None else self.peer_link_gbps)

    def collective_bytes_per_s(self, num_devices: int) -> float:
        """Per-direction bandwidth one device gets in a collective over `num_devices` in the node."""
        link = self.intra_node_link_gbps
        if self.peer_link_gbps is not None:
            link = min(link, self.peer_link_gbps * max(1, num_devices - 1))
        return link * 1e9
