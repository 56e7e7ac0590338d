"""How many KV blocks a replica has: device memory minus weights, activations and overhead.

Follows how vLLM sizes its cache: a share of device memory (`gpu_memory_utilization`) is the
budget; weights, a peak-activation estimate and a fixed overhead come off it; the rest is KV.
Sizes no real machine could hold (a fixed pool beyond the device's memory, a swap space beyond
a server's host memory, more pool blocks than the simulator can index) are refused here, before
anything is allocated, with the bound that would have been needed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from servesim.hwmodels import ParallelPlan
from servesim.hwmodels.catalog import HardwareSpec, ModelSpec
from servesim.sim.errors import ConfigError
from servesim.sim.experiment.config import MemoryConfig

GIB = 2**30
ACTIVATION_BYTES = 2
LOGIT_BYTES = 4
MAX_HOST_MEMORY_GIB = 4096  # host memory of one server: the largest common ones hold 2-4 TiB
MAX_POOL_BLOCKS = 2**25  # the engine keeps one entry per KV block (device and host) of every replica


@dataclass(frozen=True)
class KvCapacity:
    """The memory budget of one device of a replica, in bytes, and the resulting block counts."""

    budget_bytes: int
    weight_bytes: int
    activation_bytes: int
    overhead_bytes: int
    kv_bytes_per_token: int
    block_size: int
    num_blocks: int
    swap_blocks: int

    @property
    def kv_bytes(self) -> int:
        return self.num_blocks * self.block_size * self.kv_bytes_per_token

    @property
    def block_bytes(self) -> int:
        return self.block_size * self.kv_bytes_per_token

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
    offloaded_bytes: int = 0,
) -> KvCapacity:
    """`offloaded_bytes`: weights per device that live in host memory instead (offloaded experts)."""
    kv_per_token = model.kv_bytes_per_token_per_device(plan)
    block_bytes = memory.block_size * kv_per_token
    budget = int(hardware.memory_gib * GIB * memory.gpu_memory_utilization)
    if memory.overhead_gib * GIB >= budget:
        raise ConfigError(
            f"memory.overhead_gib: {memory.overhead_gib:g} GiB per device is all of the {budget / GIB:.1f} GiB "
            f"the replica may use on {hardware.name} "
            f"({memory.gpu_memory_utilization:.0%} of {hardware.memory_gib:g} GiB); "
            "a real overhead is about 1 GiB"
        )
    weights = model.weight_bytes_per_device(plan) - offloaded_bytes
    activations = activation_bytes(model, plan, max_batched_tokens, max_num_seqs)
    overhead = int(memory.overhead_gib * GIB)
    if activations >= budget:
        raise ConfigError(
            f"scheduler: a batch of max_num_batched_tokens={max_batched_tokens:,} tokens and "
            f"max_num_seqs={max_num_seqs:,} sequences needs about {activations / GIB:,.1f} GiB of activations "
            f"per device, more than the {budget / GIB:.1f} GiB {hardware.name} can give the replica; "
            "vLLM's defaults are 8192 and 256"
        )
    if memory.num_kv_blocks is not None:
        num_blocks = memory.num_kv_blocks
        if num_blocks * block_bytes > budget:
            raise ConfigError(
                f"memory.num_kv_blocks: {num_blocks:,} blocks of {block_bytes:,} bytes would need "
                f"{num_blocks * block_bytes / GIB:,.1f} GiB per device, more than the {budget / GIB:.1f} GiB "
                f"{hardware.name} can give the replica; at most {budget // block_bytes:,} blocks fit "
                "even with no weights"
            )
    else:
        free = budget - weights - activations - overhead
        if 0 < free < block_bytes:
            raise ConfigError(
                f"memory.block_size: one block of {memory.block_size:,} tokens needs {block_bytes / GIB:,.2f} GiB per "
                f"device, more than the {free / GIB:.2f} GiB left for KV; the largest block that fits holds "
                f"{free // kv_per_token:,} tokens (vLLM uses 16)"
            )
        num_blocks = free // block_bytes if free > 0 else 0
        if num_blocks < 1:
            raise ConfigError(
                f"memory: {model.name} does not fit on {hardware.name} with tp={plan.tp}, pp={plan.pp}: "
                f"per device {weights / GIB:.1f} GiB of weights + {activations / GIB:.2f} GiB activations + "
                f"{overhead / GIB:.1f} GiB overhead leave no room for KV in {budget / GIB:.1f} GiB "
                f"({memory.gpu_memory_utilization:.0%} of {hardware.memory_gib} GiB). "
                "Raise cluster.parallel.tp/pp, choose a larger device, or raise memory.gpu_memory_utilization."
            )
    host_gib = memory.swap_space_gib * hardware.devices_per_node
    if host_gib > MAX_HOST_MEMORY_GIB:
        raise ConfigError(
            f"memory.swap_space_gib: {memory.swap_space_gib:,g} GiB per device would need {host_gib:,g} GiB of host "
            f"memory on a {hardware.devices_per_node}-device {hardware.name} server, more than the "
            f"{MAX_HOST_MEMORY_GIB:,} GiB servesim accepts; use at most "
            f"{MAX_HOST_MEMORY_GIB / hardware.devices_per_node:,g} GiB (vLLM's default is 4)"
        )
    swap_blocks = int(memory.swap_space_gib * GIB) // block_bytes
    return KvCapacity(budget, weights, activations, overhead, kv_per_token, memory.block_size, int(num_blocks),
                      swap_blocks)


def check_pool_blocks(capacity: KvCapacity, replicas: int) -> None:
    """The engine indexes every block of every replica's device and host pools: bound their total."""
    total = (capacity.num_blocks + capacity.swap_blocks) * replicas
    if total > MAX_POOL_BLOCKS:
        raise ConfigError(
            f"memory: {replicas:,} replica(s) x ({capacity.num_blocks:,} KV + {capacity.swap_blocks:,} swap blocks) is "
            f"{total:,} blocks, more than the {MAX_POOL_BLOCKS:,} the simulator holds; raise memory.block_size, "
            "or lower cluster.replicas, memory.num_kv_blocks or memory.swap_space_gib"
        )


def model_len(memory: MemoryConfig, model: ModelSpec) -> int:
    """The longest prompt + output a replica accepts: the model's context unless set lower."""
    if memory.max_model_len is None:
        return model.max_position_embeddings
    if memory.max_model_len > model.max_position_embeddings:
        raise ConfigError(
            f"memory.max_model_len: {memory.max_model_len:,} is longer than the "
            f"{model.max_position_embeddings:,}-token context of {model.name} (max_position_embeddings); "
            "use at most that, as vLLM requires"
        )
    return memory.max_model_len
