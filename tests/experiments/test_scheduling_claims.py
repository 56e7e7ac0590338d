"""The headline claims of Sarathi-Serve, FlowPrefill and LAPS, on their experiments as shipped.

Each experiment is small (a few thousand requests at most) and runs in about a second.
"""
import pytest

from tests.experiments.claims import run_claim


@pytest.mark.parametrize("name", ["sarathi_vs_vllm", "flowprefill", "laps"])
def test_the_claimed_direction_holds(name):
    verdict = run_claim(name, [])
    assert verdict["holds"], verdict
