"""Importing this module registers every built-in policy."""
from policies import eviction, predictors, preemption, queues, routers  # noqa: F401
from policies.schedulers import batchllm, flowprefill, laps, orca, past_future, presets, sarathi, static, vllm  # noqa: F401
