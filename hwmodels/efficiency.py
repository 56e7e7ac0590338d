"""Achieved-rate curves of GPU kernels, fitted to measured kernel latencies (the roofline's physics).

A kernel that does F FLOPs and moves B bytes on a device with peak rate P and bandwidth W takes

    t = t0 + (tc^q + tm^q)^(1/q),   tc = (F + Fh^a F^(1-a)) / (P ec),   tm = (B + Bh^a B^(1-a)) / (W em)

Seven parameters per (GPU family, kernel kind, dtype), each with a physical reading:
- `ec`, `em`: the shares of peak FLOP/s and bandwidth that large kernels reach;
- `Fh`, `Bh`: the sizes at which a kernel reaches half of that (too few tiles or too little
  memory traffic in flight to fill the device); `a` (0 < a < 1) how fast the rate ramps up.
  Written as a rate, the achieved FLOP/s is P ec / (1 + (Fh/F)^a), which rises monotonically
  with F to P ec: the saturating curve;
- `q`: how sharply the kernel turns from memory- to compute-bound (q -> inf is the plain max of
  the textbook roofline; measured kernels are slower than that near the ridge, q ~ 2-5);
- `t0`: the fixed floor of a kernel (launch and tail), what a tiny kernel costs.
Decode attention has an eighth, `tile_positions`: each sequence reads at least one tile of KV
positions however short its context (the kernel's KV tile, ~150 positions on Hopper), which
`hwmodels.operators` adds to each decode's bytes; it is 0 for the other kinds.
The form is division-free, so F = 0 or B = 0 (a copy, a pure GEMM) is fine, and it works on numpy
arrays as well as floats. Curves are stored in `data/roofline_calibration.yaml`, written by
`servesim.hwmodels.calibration_fit` from the measured tables.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import yaml

from servesim.hwmodels.errors import CatalogError

CALIBRATION_FILE = "roofline_calibration.yaml"
KERNEL_KINDS = ("gemm", "attn_prefill", "attn_decode")
# Curves are fitted for these formats; others use the curve of their storage-size sibling.
CURVE_DTYPES = {"bf16": "bf16", "fp16": "bf16", "fp32": "bf16", "fp8": "fp8", "int4": "bf16"}


@dataclass(frozen=True, slots=True)
class EfficiencyCurve:
    """One fitted kernel-time curve (see the module docstring); `sharpness` None is the plain max."""

    floor_s: float
    compute_efficiency: float
    compute_half_flops: float
    memory_efficiency: float
    memory_half_bytes: float
    ramp: float
    sharpness: float | None
    tile_positions: float = 0.0

    def __post_init__(self) -> None:
        problems = [f"{key} must be in (0, 1], got {getattr(self, key)}"
                    for key in ("compute_efficiency", "memory_efficiency") if not 0 < getattr(self, key) <= 1]
        problems += [f"{key} must be >= 0, got {getattr(self, key)}"
                     for key in ("floor_s", "compute_half_flops", "memory_half_bytes", "tile_positions")
                     if getattr(self, key) < 0]
        if not 0 < self.ramp < 1:
            problems.append(f"ramp must be in (0, 1), got {self.ramp}")
        if self.sharpness is not None and self.sharpness < 1:
            problems.append(f"sharpness must be >= 1, got {self.sharpness}")
        if problems:
            raise ValueError("efficiency curve: " + "; ".join(problems))

    @classmethod
    def flat(cls, compute_efficiency: float, memory_efficiency: float) -> EfficiencyCurve:
        """The textbook roofline: constant shares of peak, no ramp, no floor."""
        return cls(0.0, compute_efficiency, 0.0, memory_efficiency, 0.0, 0.5, None)

    def with_efficiencies(self, compute: float | None, memory: float | None) -> EfficiencyCurve:
        """This curve with its large-kernel shares of peak replaced (user overrides)."""
        return replace(self, compute_efficiency=self.compute_efficiency if compute is None else compute,
                       memory_efficiency=self.memory_efficiency if memory is None else memory)

    def compute_seconds(self, flops: Any, peak_flops_per_s: float) -> Any:
        a = self.ramp
        return (flops + self.compute_half_flops ** a * flops ** (1 - a)) / (peak_flops_per_s * self.compute_efficiency)

    def memory_seconds(self, nbytes: Any, bytes_per_s: float) -> Any:
        a = self.ramp
        return (nbytes + self.memory_half_bytes ** a * nbytes ** (1 - a)) / (bytes_per_s * self.memory_efficiency)

    def seconds(self, flops: Any, nbytes: Any, peak_flops_per_s: Any, bytes_per_s: Any) -> Any:
        """Kernel seconds for `flops` and `nbytes` (floats or numpy arrays)."""
        return self.pricer(peak_flops_per_s, bytes_per_s)(flops, nbytes)

    def pricer(self, peak_flops_per_s: Any, bytes_per_s: Any) -> Callable[[Any, Any], Any]:
        """`seconds` with the device's rates and the curve's constants folded in: the hot path."""
        floor, keep = self.floor_s, 1 - self.ramp
        per_flop = 1 / (peak_flops_per_s * self.compute_efficiency)
        per_byte = 1 / (bytes_per_s * self.memory_efficiency)
        flop_ramp, byte_ramp = self.compute_half_flops ** self.ramp, self.memory_half_bytes ** self.ramp
        if self.sharpness is None:
            def flat(flops: Any, nbytes: Any) -> Any:
                return floor + np.maximum(per_flop * (flops + flop_ramp * flops ** keep),
                                          per_byte * (nbytes + byte_ramp * nbytes ** keep))
            return flat
        q, inverse = self.sharpness, 1 / self.sharpness

        def smooth(flops: Any, nbytes: Any) -> Any:
            compute = per_flop * (flops + flop_ramp * flops ** keep)
            memory = per_byte * (nbytes + byte_ramp * nbytes ** keep)
            return floor + (compute ** q + memory ** q) ** inverse
        return smooth

    def achieved_fraction(self, flops: Any, nbytes: Any) -> tuple[Any, Any]:
        """Shares of peak FLOP/s and of bandwidth a kernel of this size reaches on its own roof."""
        a = self.ramp
        compute = self.compute_efficiency / (1 + (self.compute_half_flops / np.asarray(flops, dtype=float)) ** a)
        memory = self.memory_efficiency / (1 + (self.memory_half_bytes / np.asarray(nbytes, dtype=float)) ** a)
        return compute, memory

    def as_dict(self) -> dict[str, float | None]:
        return {key: getattr(self, key) for key in self.__slots__}


@dataclass(frozen=True, slots=True)
class FamilyCurves:
    """The curves of one GPU family, by kernel kind and dtype; `source` says where they come from."""

    family: str
    source: str
    curves: Mapping[str, Mapping[str, EfficiencyCurve]]

    def curve(self, kind: str, dtype: str) -> EfficiencyCurve:
        """The curve for `kind` in `dtype`; a dtype the family was not measured in uses its bf16 curve."""
        by_dtype = self.curves[kind]
        return by_dtype.get(CURVE_DTYPES.get(dtype, "bf16")) or by_dtype["bf16"]


def family_of(hardware_name: str) -> str | None:
    """The calibrated family a catalog device belongs to, or None (flat catalog efficiencies)."""
    return _calibration()["hardware"].get(hardware_name)


def family_curves(hardware_name: str) -> FamilyCurves | None:
    family = family_of(hardware_name)
    if family is None:
        return None
    entry = _calibration()["families"][family]
    curves = {kind: {dtype: EfficiencyCurve(**params) for dtype, params in by_dtype.items()}
              for kind, by_dtype in entry["curves"].items()}
    return FamilyCurves(family, f"{family} family curves ({_calibration()['source']['summary']})", curves)


@cache
def _calibration() -> dict[str, Any]:
    text = (resources.files("servesim.hwmodels") / "data" / CALIBRATION_FILE).read_text()
    data = yaml.safe_load(text)
    missing = [key for key in ("source", "hardware", "families") if key not in data]
    if missing:
        raise CatalogError(f"hwmodels/data/{CALIBRATION_FILE}: missing {missing}; regenerate it with "
                           "`python -m servesim.hwmodels.calibration_fit`")
    unknown = sorted({f for f in data["hardware"].values() if f not in data["families"]})
    if unknown:
        raise CatalogError(f"hwmodels/data/{CALIBRATION_FILE}: hardware maps to unknown families {unknown}")
    return data
