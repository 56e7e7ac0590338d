"""Policy plug-ins (scheduling, preemption, routing) and their registry.

Policies read views of engine state and return decisions; they never touch SimPy.
"""
from policies.base import PolicyParams, PreemptionPolicy, RouterPolicy, SchedulerPolicy
from policies.decisions import ScheduleDecision
from policies.registry import (
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
    "PolicyEntry",
    "PolicyError",
    "PolicyParams",
    "PreemptionPolicy",
    "RouterPolicy",
    "ScheduleDecision",
    "SchedulerPolicy",
    "all_policies",
    "create_policy",
    "get_policy",
    "policy_names",
    "register",
    "validate_params",
]
