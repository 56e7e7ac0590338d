"""Timing one kernel on one device, and what the metadata says about that device.

A measurement runs a few warm-up calls, then times each repeat on its own (CUDA events around
the call on a GPU, the monotonic clock on a CPU) and keeps the median, which shrugs off the
occasional scheduler hiccup. Each call gets the next of several copies of its inputs, so a
small working set does not stay in cache from one repeat to the next and flatter the result.
"""
from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Timer:
    """Median seconds of `repeats` timed calls after `warmup` untimed ones."""

    device: torch.device
    warmup: int = 3
    repeats: int = 10

    def seconds(self, call: Callable[[int], object]) -> float:
        """`call(i)` runs the kernel on input copy i (callers take i modulo their copies)."""
        for i in range(self.warmup):
            call(i)
        self.synchronize()
        times = [self._one(call, self.warmup + i) for i in range(self.repeats)]
        return float(sorted(times)[len(times) // 2])

    def _one(self, call: Callable[[int], object], i: int) -> float:
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call(i)
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        began = time.perf_counter()
        call(i)
        return time.perf_counter() - began

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def device_info(device: torch.device) -> dict[str, str]:
    """Device name, driver and torch version for a table's metadata."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        driver = f"CUDA {torch.version.cuda}"
        try:
            import subprocess

            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
            driver = smi.stdout.strip().splitlines()[0] + f", {driver}"
        except (OSError, IndexError, subprocess.SubprocessError):
            pass
        return {"device_name": props.name, "driver": driver, "torch_version": torch.__version__}
    return {
        "device_name": f"CPU {_cpu_name()} ({torch.get_num_threads()} threads)",
        "driver": "none (CPU)",
        "torch_version": torch.__version__,
    }


def _cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (Linux), else the machine type."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
