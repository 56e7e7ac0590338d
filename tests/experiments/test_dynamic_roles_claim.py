"""Dynamic roles' claim on the first two phases of experiments/dynamic_roles.yaml's shifting trace."""
from tests.experiments.claims import run_claim


def test_dynamic_roles_serve_more_goodput_than_static_roles_on_a_shifting_mix():
    verdict = run_claim("dynamic_roles", ["workload.end_s=120"])
    assert verdict["holds"], verdict
