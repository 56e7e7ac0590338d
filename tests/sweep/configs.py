"""Tiny sweep configs shared by the sweep tests: constant iteration times, a few dozen requests."""
from __future__ import annotations

from typing import Any

from servesim.sim.experiment.loading import validate_config


def tiny(sweep: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """A config dict of a small synthetic experiment with the given `sweep:` block."""
    return {
        "name": "tiny",
        "cost_model": {"kind": "constant", "iteration_s": 0.01},
        "workload": {"arrival": {"process": "poisson", "rate": 20.0}, "prompt_tokens": {"dist": "fixed", "value": 64},
                     "output_tokens": {"dist": "fixed", "value": 8}, "num_requests": 30},
        "slo": {"ttft_s": 0.05},
        "output": {"plots": False},
        "sweep": sweep,
        **sections,
    }


def tiny_config(sweep: dict[str, Any], **sections: Any):
    return validate_config(tiny(sweep, **sections))
