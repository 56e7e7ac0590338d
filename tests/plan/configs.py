"""Tiny plan configs shared by the placement-search tests: a few dozen requests, a small budget."""
from __future__ import annotations

from typing import Any

from servesim.sim.experiment.loading import validate_config


def tiny_plan(plan: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """A config dict of a small synthetic experiment (constant iteration times) with the given `plan:` block."""
    return {
        "name": "tiny",
        "cost_model": {"kind": "constant", "iteration_s": 0.01},
        "workload": {"arrival": {"process": "poisson", "rate": 20.0}, "prompt_tokens": {"dist": "fixed", "value": 64},
                     "output_tokens": {"dist": "fixed", "value": 8}, "num_requests": 40},
        "slo": {"ttft_s": 0.05},
        "output": {"plots": False},
        "plan": plan,
        **sections,
    }


def roofline_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """An 8B model priced by the roofline, with tight objectives: the parallel plan changes the goodput."""
    return tiny_plan(plan, model="llama-3.1-8b", hardware="h100-sxm",
                     cost_model={"kind": "roofline"}, engine={"version": "none", "api_server": False},
                     workload={"arrival": {"process": "poisson", "rate": 4.0},
                               "prompt_tokens": {"dist": "fixed", "value": 2048},
                               "output_tokens": {"dist": "fixed", "value": 32}, "num_requests": 40},
                     slo={"ttft_s": 0.15, "tpot_s": 0.02})


def config_of(data: dict[str, Any]):
    return validate_config(data)
