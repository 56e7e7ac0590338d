"""How long one phase's iteration takes on a share of a device's SMs, beside the other phase.

Intra-GPU disaggregation (Nexus: Shi et al., "Proactive Intra-GPU Disaggregation of Prefill and
Decode in LLM Serving", arXiv 2507.06608) runs the prefill and the decode loop of one replica
at the same time on one device, each on its own partition of the streaming multiprocessors.
The paper's two observations shape this model:

- **Diminishing returns.** Priced operator by operator with the roofline, an operator with
  `c` seconds of FLOPs at the device's peak and `m` seconds of bytes at its peak bandwidth
  takes, on a share `s` of the SMs,

      t(s) = max(c / s, m * D / min(1, s / s_sat))

  Compute throughput grows with the SMs; memory bandwidth grows with them only until `s_sat`
  (`saturation_share`), the share of SMs whose loads already saturate the memory system.
  Memory-bound decode therefore stops getting faster beyond `s_sat`, while compute-bound
  prefill keeps scaling as 1/s.
- **Bandwidth contention.** When both phases run, each asks for a share of the peak bandwidth
  (its bytes over its time alone at its share). If the two demands add up to `D > 1`, HBM is
  shared in proportion to demand and every phase's memory traffic takes `D` times longer
  (the `D` above; 1 when only one phase runs or the demands fit).

The cost model's own iteration time for the phase's batch stays the reference: the kernels'
time on the whole device is scaled by `t(s)` summed over the operators, divided by the same
sum at `s = 1, D = 1`; the engine's CPU time per step is not scaled (it runs on the host).
Collectives (TP, EP) are scaled with the kernels, for want of a model of how SM partitions
share NVLink.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from servesim.hwmodels.cost_model import CostModel
from servesim.hwmodels.hardware_spec import HardwareSpec
from servesim.hwmodels.model_spec import ModelSpec
from servesim.hwmodels.operators import OperatorBuilder, OpKind
from servesim.hwmodels.shapes import BatchShape, ParallelPlan

DEFAULT_SATURATION_SHARE = 0.4
"""Share of SMs that saturates HBM bandwidth: streaming kernels on A100/H100-class GPUs reach
their peak bandwidth with roughly a third to a half of the SMs, where the Nexus paper's decode
latency flattens too. An assumption, exposed as `bandwidth_saturation_share`."""


@dataclass(frozen=True, slots=True)
class PhaseWork:
    """One phase's iteration as the SM-share model sees it: its operators' compute and memory
    seconds at the device's peaks, and the cost model's times for the batch on the whole device."""

    compute_s: np.ndarray
    memory_s: np.ndarray
    kernel_s: float
    """The cost model's kernel time on the whole device (scaled by the share)."""
    host_s: float
    """The engine's CPU time for the step (not scaled)."""
    saturation_share: float = DEFAULT_SATURATION_SHARE
    _alone_s: float = field(init=False, repr=False)
    """The operators' roofline seconds on the whole device, without contention."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_alone_s", float(np.maximum(self.compute_s, self.memory_s).sum()))

    def _roofline_s(self, shares: np.ndarray, contention: np.ndarray | float) -> np.ndarray:
        """The operators' roofline seconds summed, at each share (> 0) and contention."""
        column = shares[..., None]
        slowed = self.memory_s * np.maximum(1.0, self.saturation_share / column)
        if not np.isscalar(contention) or contention != 1.0:
            slowed = slowed * np.asarray(contention, dtype=np.float64)[..., None]
        return np.maximum(self.compute_s / column, slowed).sum(axis=-1)

    def scale(self, shares: np.ndarray | float, contention: np.ndarray | float = 1.0) -> np.ndarray:
        """Roofline time on `shares` of the SMs (memory traffic slowed by `contention`) over the
        time on the whole device alone: 1 at share 1, infinite at share 0."""
        shares = np.asarray(shares, dtype=np.float64)
        if self._alone_s <= 0:
            return np.where(shares > 0, 1.0, np.inf)
        ratio = self._roofline_s(np.where(shares > 0, shares, 1.0), contention) / self._alone_s
        return np.where(shares > 0, ratio, np.inf)

    def seconds(self, shares: np.ndarray | float, contention: np.ndarray | float = 1.0) -> np.ndarray:
        """Iteration seconds on `shares` of the SMs (elementwise), memory traffic slowed by `contention`."""
        return self.kernel_s * self.scale(shares, contention) + self.host_s

    def bandwidth_demand(self, shares: np.ndarray | float) -> np.ndarray:
        """Share of the peak bandwidth this phase uses running alone on `shares` of the SMs."""
        shares = np.asarray(shares, dtype=np.float64)
        if self._alone_s <= 0:
            return np.zeros(shares.shape)
        demand = self.memory_s.sum() / self._roofline_s(np.where(shares > 0, shares, 1.0), 1.0)
        return np.where(shares > 0, demand, 0.0)


class SmShareModel:
    """Prices a prefill and a decode batch sharing one device at a given prefill share of its SMs.

    `host_seconds(batch)` is the part of the cost model's time that runs on the host (the
    engine's CPU time); the rest is kernel time and scales with the share.
    """

    def __init__(self, cost_model: CostModel, operators: OperatorBuilder, peak_flops: float,
                 peak_bytes_per_s: float, saturation_share: float = DEFAULT_SATURATION_SHARE,
                 host_seconds: Callable[[BatchShape], float] = lambda batch: 0.0) -> None:
        if not 0 < saturation_share <= 1:
            raise ValueError(f"saturation_share must be in (0, 1], got {saturation_share}")
        self.cost_model = cost_model
        self.operators = operators
        self.peak_flops = peak_flops
        self.peak_bytes_per_s = peak_bytes_per_s
        self.saturation_share = saturation_share
        self.host_seconds = host_seconds

    @classmethod
    def for_model(cls, cost_model: CostModel, model: ModelSpec, hardware: HardwareSpec, plan: ParallelPlan,
                  saturation_share: float = DEFAULT_SATURATION_SHARE,
                  host_seconds: Callable[[BatchShape], float] = lambda batch: 0.0) -> SmShareModel:
        return cls(cost_model, OperatorBuilder(model, plan), hardware.peak_flops(model.activation_dtype),
                   hardware.memory_bandwidth_gbps * 1e9, saturation_share, host_seconds)

    def work(self, batch: BatchShape) -> PhaseWork:
        """`batch`'s operators as compute and memory seconds, and its cost-model times."""
        ops = [op for op in self.operators.iteration_ops(batch) if op.kind is not OpKind.OVERHEAD]
        compute = np.array([op.calls * float(op.flops) for op in ops]) / self.peak_flops
        memory = np.array([op.calls * float(op.bytes_moved) for op in ops]) / self.peak_bytes_per_s
        host = self.host_seconds(batch)
        kernel = self.cost_model.iteration_time(batch) - host
        return PhaseWork(compute, memory, max(kernel, 0.0), host, self.saturation_share)

    def phase_seconds(self, prefill: PhaseWork | None, decode: PhaseWork | None,
                      prefill_shares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Seconds of each phase's iteration at each prefill share (decode gets the rest), with
        contention when both run; a phase without a batch takes 0 s."""
        prefill_s, decode_s, _ = self.phase_times(prefill, decode, prefill_shares)
        return prefill_s, decode_s

    def phase_times(self, prefill: PhaseWork | None, decode: PhaseWork | None,
                    prefill_shares: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`phase_seconds` and the contention factor at each prefill share (1 unless both run)."""
        shares = np.asarray(prefill_shares, dtype=np.float64)
        zero, one = np.zeros(shares.shape), np.ones(shares.shape)
        if prefill is None or decode is None:
            if prefill is not None:
                return prefill.seconds(shares), zero, one
            if decode is not None:
                return zero, decode.seconds(1.0 - shares), one
            return zero, zero, one
        factor = self.contention(prefill, decode, shares)
        return prefill.seconds(shares, factor), decode.seconds(1.0 - shares, factor), factor

    @staticmethod
    def contention(prefill: PhaseWork, decode: PhaseWork, prefill_shares: np.ndarray) -> np.ndarray:
        """How much longer memory traffic takes with both phases running: their summed bandwidth
        demands (each alone on its share), at least 1."""
        return np.maximum(1.0, prefill.bandwidth_demand(prefill_shares) + decode.bandwidth_demand(1.0 - prefill_shares))
