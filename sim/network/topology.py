"""Where each replica's devices sit: nodes of N devices, and the links a device has.

Placement (the cluster's contract): pools are placed in config order; a pool whose hardware
differs from the previous pool's starts on a new node; a replica's devices sit inside one node
when they fit (a replica never straddles two nodes then), else on consecutive whole nodes.
Device ids are global and consecutive over the nodes' slots, used or not.

Each device has three ports, each with a capacity per direction: its fabric port (NVLink/NVSwitch
inside the node), its NIC (between nodes) and its host port (PCIe to the node's host memory).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from servesim.hwmodels.hardware_spec import HardwareSpec

HOST_LINK_LATENCY_US = 6.0
"""What one copy between a device and host memory pays once: the catalog has no host latency. Source:
the DualPath paper (Wu et al., arXiv 2602.21548, 2026, Section 5.2) measured 5-7 us of overhead per
cudaMemcpyAsync call; 6 us is its middle. `cluster.topology.host.latency_us` overrides it."""


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """A link's figures where the user overrides the hardware entry's (None: the entry's)."""

    gbps: float | None = None
    latency_us: float | None = None

    def resolve(self, gbps: float, latency_us: float) -> LinkRate:
        """The link with this override applied to the entry's figures."""
        return LinkRate(bytes_per_s=(gbps if self.gbps is None else self.gbps) * 1e9,
                        latency_s=(latency_us if self.latency_us is None else self.latency_us) * 1e-6)


@dataclass(frozen=True, slots=True)
class LinkRate:
    """One port's capacity per direction, and the latency a transfer over it pays once."""

    bytes_per_s: float
    latency_s: float


@dataclass(frozen=True, slots=True)
class PoolShape:
    """What placement needs to know of a pool."""

    name: str
    hardware: HardwareSpec
    replicas: int
    devices_per_replica: int


class LinkKind(str, Enum):
    """A device's port on its node's fabric (NVLink/NVSwitch, or PCIe without it), its NIC, or its
    PCIe link to host memory (out: device to host, in: host to device)."""

    FABRIC = "fabric"
    NIC = "nic"
    HOST = "host"

    def __str__(self) -> str:
        return self.value


class Direction(str, Enum):
    OUT = "out"
    IN = "in"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class LinkId:
    """One direction of one device's port: the unit that carries flows and has a capacity."""

    device: int
    kind: LinkKind
    direction: Direction


@dataclass(frozen=True, slots=True)
class Node:
    index: int
    hardware: HardwareSpec
    first_device: int
    num_devices: int
    intra_node: LinkRate
    inter_node: LinkRate
    host: LinkRate


@dataclass(frozen=True)
class Topology:
    """Nodes, the devices of every (pool, replica), and the ports between them."""

    nodes: tuple[Node, ...]
    placement: Mapping[tuple[str, int], tuple[int, ...]] = field(hash=False)
    _node_by_device: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_device = tuple(node.index for node in self.nodes for _ in range(node.num_devices))
        object.__setattr__(self, "_node_by_device", by_device)

    @classmethod
    def build(cls, shapes: Sequence[PoolShape], devices_per_node: int | None = None,
              intra_node: LinkConfig | None = None, inter_node: LinkConfig | None = None,
              host: LinkConfig | None = None) -> Topology:
        """Place `shapes` in order; None overrides keep each hardware entry's figures."""
        placer = _Placer(devices_per_node, intra_node or LinkConfig(), inter_node or LinkConfig(),
                         host or LinkConfig())
        placement: dict[tuple[str, int], tuple[int, ...]] = {}
        for shape in shapes:
            if shape.replicas < 0 or shape.devices_per_replica < 1:
                raise ValueError(f"pool {shape.name!r}: needs replicas >= 0 and devices_per_replica >= 1")
            placer.start_pool(shape.hardware)
            for replica in range(shape.replicas):
                placement[(shape.name, replica)] = placer.place(shape.devices_per_replica)
        return cls(nodes=tuple(placer.nodes), placement=placement)

    def devices(self, pool: str, replica: int) -> tuple[int, ...]:
        try:
            return self.placement[(pool, replica)]
        except KeyError:
            raise KeyError(f"no replica {replica} in pool {pool!r}") from None

    def node_of(self, device: int) -> Node:
        if not 0 <= device < len(self._node_by_device):
            raise KeyError(f"device {device} is on no node (the topology has {self.num_devices} devices)")
        return self.nodes[self._node_by_device[device]]

    @property
    def num_devices(self) -> int:
        return len(self._node_by_device)

    def same_node(self, device_a: int, device_b: int) -> bool:
        return self.node_of(device_a).index == self.node_of(device_b).index

    def path(self, src: int, dst: int) -> tuple[LinkId, ...]:
        """The ports a flow from `src` to `dst` crosses: none on one device; the sender's fabric
        out-port and the receiver's in-port inside a node (NVSwitch: non-blocking between ports);
        the two NICs between nodes (GPUDirect RDMA, one NIC per device)."""
        if src == dst:
            return ()
        kind = LinkKind.FABRIC if self.same_node(src, dst) else LinkKind.NIC
        return LinkId(src, kind, Direction.OUT), LinkId(dst, kind, Direction.IN)

    def latency_s(self, src: int, dst: int) -> float:
        """What one transfer between the two devices pays once (the slower end's, between nodes)."""
        if src == dst:
            return 0.0
        a, b = self.node_of(src), self.node_of(dst)
        if a.index == b.index:
            return a.intra_node.latency_s
        return max(a.inter_node.latency_s, b.inter_node.latency_s)

    def host_path(self, device: int, direction: Direction) -> tuple[LinkId, ...]:
        """The port a copy between `device` and its node's host memory crosses (out: to the host)."""
        self.node_of(device)  # a KeyError for a device on no node
        return (LinkId(device, LinkKind.HOST, direction),)

    def host_latency_s(self, device: int) -> float:
        return self.node_of(device).host.latency_s

    def capacity(self, link: LinkId) -> float:
        return self._rate(link).bytes_per_s

    def _rate(self, link: LinkId) -> LinkRate:
        node = self.node_of(link.device)
        if link.kind is LinkKind.FABRIC:
            return node.intra_node
        return node.inter_node if link.kind is LinkKind.NIC else node.host

    def link_name(self, link: LinkId) -> str:
        """A name without dots (summary key paths split on dots): node, device, port kind."""
        return f"node{self.node_of(link.device).index}/dev{link.device}/{link.kind}"


@dataclass
class _Placer:
    devices_per_node: int | None
    intra_override: LinkConfig
    inter_override: LinkConfig
    host_override: LinkConfig
    nodes: list[Node] = field(default_factory=list)
    used: int = 0
    hardware: HardwareSpec | None = None

    def start_pool(self, hardware: HardwareSpec) -> None:
        if self.hardware is None or hardware.name != self.hardware.name:
            self.hardware = hardware
            self.used = self._node_size()  # the next replica opens a node of this hardware

    def place(self, count: int) -> tuple[int, ...]:
        size = self._node_size()
        if count <= size:
            if self.used + count > size:
                self._open_node()
            first = self.nodes[-1].first_device + self.used
            self.used += count
            return tuple(range(first, first + count))
        devices: list[int] = []
        for _ in range(math.ceil(count / size)):
            self._open_node()
            devices += range(self.nodes[-1].first_device, self.nodes[-1].first_device + size)
        self.used = size  # whole nodes: the next replica starts on a fresh one
        return tuple(devices[:count])

    def _node_size(self) -> int:
        assert self.hardware is not None
        return self.devices_per_node or self.hardware.devices_per_node

    def _open_node(self) -> None:
        hardware = self.hardware
        assert hardware is not None
        first = self.nodes[-1].first_device + self.nodes[-1].num_devices if self.nodes else 0
        self.nodes.append(Node(
            index=len(self.nodes), hardware=hardware, first_device=first, num_devices=self._node_size(),
            intra_node=self.intra_override.resolve(hardware.intra_node_link_gbps, hardware.link_latency_us),
            inter_node=self.inter_override.resolve(hardware.inter_node_link_gbps, hardware.inter_node_latency_us),
            host=self.host_override.resolve(hardware.host_link_gbps, HOST_LINK_LATENCY_US),
        ))
        self.used = 0
