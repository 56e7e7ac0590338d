"""Which parallel plans a model can run under, by the rules real engines enforce.

vLLM splits attention heads and MLP columns over TP ranks with exact division (no padding), so
TP must divide the attention heads and the dense MLP's intermediate size. K/V heads split over
TP too; when TP exceeds them each rank holds one replicated head, which needs TP to be a
multiple of the K/V heads (QKVParallelLinear). MLA's latent KV is replicated whatever TP is.
The vocabulary is padded to a multiple of TP, so it never restricts TP.
"""
from __future__ import annotations

from servesim.hwmodels.hardware_spec import HardwareSpec
from servesim.hwmodels.model_spec import ModelSpec
from servesim.hwmodels.shapes import ParallelPlan


def plan_problems(plan: ParallelPlan, model: ModelSpec, hardware: HardwareSpec) -> list[str]:
    """Each reason `plan` cannot run `model` on `hardware`, naming the config key to change."""
    tp, problems = plan.tp, []
    if tp > hardware.devices_per_node:
        problems.append(
            f"cluster.parallel.tp: {tp} is larger than the {hardware.devices_per_node} devices of one "
            f"{hardware.name} node; tensor parallelism stays within a node"
        )
    if model.num_attention_heads % tp:
        problems.append(f"cluster.parallel.tp: {tp} does not divide the {model.num_attention_heads} attention heads "
                        f"of {model.name}; use one of {_divisors(model.num_attention_heads)}")
    kv = model.num_kv_heads
    if not model.uses_mla and (kv % tp if tp <= kv else tp % kv):
        problems.append(f"cluster.parallel.tp: {tp} neither divides the {kv} K/V heads of {model.name} nor is a "
                        f"multiple of them (then each device holds one replicated K/V head)")
    if model.num_dense_layers and model.intermediate_size % tp:
        problems.append(f"cluster.parallel.tp: {tp} does not divide the MLP intermediate size "
                        f"{model.intermediate_size} of {model.name}; "
                        f"use one of {_divisors(model.intermediate_size, 64)}")
    if plan.ep > 1 and (not model.is_moe or tp % plan.ep):
        problems.append(f"cluster.parallel.ep: {plan.ep} needs a MoE model that divides its experts within the TP "
                        f"group (ep must divide tp={tp}; {model.name} is {'MoE' if model.is_moe else 'dense'}); "
                        f"set ep: 1 or adjust tp")
    if plan.pp > model.num_layers:
        problems.append(f"cluster.parallel.pp: {plan.pp} is more stages than the {model.num_layers} layers "
                        f"of {model.name}")
    return problems


def _divisors(n: int, up_to: int = 64) -> str:
    return ", ".join(str(d) for d in range(1, min(n, up_to) + 1) if n % d == 0)
