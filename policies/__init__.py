"""Policy plug-ins (scheduling, queue order, preemption, eviction, routing, length prediction,
KV transfer, intra-GPU split) and their registry.

Policies read views of engine state and return decisions; they never touch SimPy.
"""
from servesim.policies.base import (
    CachedBlock,
    EvictionPolicy,
    LengthPredictor,
    Policy,
    PolicyParams,
    PreemptionPolicy,
    QueuePolicy,
    RouterPolicy,
    SchedulerPolicy,
    TransferDecision,
    TransferPolicy,
)
from servesim.policies.contract import PolicyContractError
from servesim.policies.decisions import PreemptionMode, ScheduleDecision
from servesim.policies.intra_gpu import SplitPolicy, SplitView
from servesim.policies.refs import PolicyRef, PredictorRef, QueueRef
from servesim.policies.registry import (
    KINDS,
    PolicyEntry,
    PolicyError,
    all_policies,
    create_policy,
    get_policy,
    policy_names,
    register,
    validate_params,
)

__all__ = [
    "KINDS",
    "CachedBlock",
    "EvictionPolicy",
    "LengthPredictor",
    "Policy",
    "PolicyEntry",
    "PolicyContractError",
    "PolicyError",
    "PolicyParams",
    "PolicyRef",
    "PredictorRef",
    "PreemptionMode",
    "PreemptionPolicy",
    "QueuePolicy",
    "QueueRef",
    "RouterPolicy",
    "ScheduleDecision",
    "SchedulerPolicy",
    "SplitPolicy",
    "SplitView",
    "TransferDecision",
    "TransferPolicy",
    "all_policies",
    "create_policy",
    "get_policy",
    "policy_names",
    "register",
    "validate_params",
]
