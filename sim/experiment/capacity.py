"""How many KV blocks a replica has: device memory minus weights, activations and overhead.

Follows how vLLM sizes its cache: a share of device memory (`gpu_memory_utilization`) is the
budget; weights, a peak-activation estimate and a fixed overhead come off it; the rest is KV.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from servesim.hwmodels import ParallelPlan
from servesim.hwmodels.catalog import HardwareSpec, ModelSpec
from servesim.sim.experiment.config import MemoryConfig
from servesim.sim.errors import ConfigError

GIB = 2**30
ACTIVATION_BYTES = 2
LOGIT_BYTES = 4


@dataclass(frozen=True)
class KvCapacity:
    """The memory budget of one device of a replica, in bytes, and the resulting block count."""

    budget_bytes: int
    weight_bytes: int
    activation_bytes: int
    overhead_bytes: int
    kv_bytes_per_token: int
    block_size: int
    num_blocks: int

    @property
    def kv_bytes(self) -> int:
        return self.num_blocks * self.block_size * self.kv_bytes_per_token

    def as_dict(self) -> dict[str, int]:
        return asdict(self) | {"kv_bytes": self.kv_bytes}


def activation_bytes(model: ModelSpec, plan: ParallelPlan, max_batched_tokens: int, max_num_seqs: int) -> int:
    """Peak activation estimate: a few hidden-sized and MLP-sized buffers per batched token,
    plus float32 logits for every sequence that samples."""
    per_token = 4 * model.hidden_size + 2 * model.intermediate_size // plan.tp
    return max_batched_tokens * per_token * ACTIVATION_BYTES + max_num_seqs * model.vocab_size * LOGIT_BYTES


def kv_capacity(
    model: ModelSpec,
    hardware: HardwareSpec,
    plan: ParallelPlan,
    memory: MemoryConfig,
    max_batched_tokens: int,
    max_num_seqs: int,
) -> KvCapacity:
    kv_per_token = model.kv_bytes_per_token_per_device(plan)
    weights = model.weight_bytes_per_device(plan)
    activations = activation_bytes(model, plan, max_batched_tokens, max_num_seqs)
    overhead = int(memory.overhead_gib * GIB)
    budget = int(hardware.memory_gib * GIB * memory.gpu_memory_utilization)
    if memory.num_kv_blocks is not None:
        num_blocks = memory.num_kv_blocks
    else:
        free = budget - weights - activations - overhead
        num_blocks = free // (memory.block_size * kv_per_token) if free > 0 else 0
        if num_blocks < 1:
            raise ConfigError(
                f"memory: {model.name} does not fit on {hardware.name} with tp={plan.tp}, pp={plan.pp}: "
                f"per device {weights / GIB:.1f} GiB of weights + {activations / GIB:.2f} GiB activations + "
                f"{overhead / GIB:.1f} GiB overhead leave no room for KV in {budget / GIB:.1f} GiB "
                f"({memory.gpu_memory_utilization:.0%} of {hardware.memory_gib} GiB). "
                "Raise cluster.parallel.tp/pp, choose a larger device, or raise memory.gpu_memory_utilization."
            )
    return KvCapacity(budget, weights, activations, overhead, kv_per_token, memory.block_size, int(num_blocks))
