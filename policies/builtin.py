"""Importing this module registers every built-in policy."""
import servesim.policies.schedulers.layered_prefill  # noqa: F401
from servesim.policies import eviction, predictors, preemption, queues, routers, splits, transfer  # noqa: F401
from servesim.policies.schedulers import batchllm, flowprefill, laps, orca, past_future, presets, sarathi, static, vllm  # noqa: F401
