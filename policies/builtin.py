"""Importing this module registers every built-in policy."""
from policies import preemption, routers  # noqa: F401
from policies.schedulers import vllm  # noqa: F401
