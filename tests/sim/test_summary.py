import numpy as np
import pandas as pd
import pytest

from servesim.sim.experiment.classes import ServiceClass
from servesim.sim.reporting.summary import latency_block, slo_met


def test_percentiles_are_inverted_cdf():
    block = latency_block(np.arange(1.0, 101.0))
    assert block == {"mean": 50.5, "p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}


def test_weights_count_values_repeatedly():
    weighted = latency_block(np.array([1.0, 2.0]), np.array([9.0, 1.0]))
    expanded = latency_block(np.array([1.0] * 9 + [2.0]))
    assert weighted == pytest.approx(expanded)


def test_empty_and_nan_values():
    assert latency_block(np.array([]))["p50"] is None
    assert latency_block(np.array([np.nan, 3.0]))["max"] == 3.0


def test_slo_met_needs_every_objective_and_skips_tpot_of_single_tokens():
    table = pd.DataFrame({
        "state": ["finished", "finished", "finished", "rejected"],
        "ttft_s": [0.1, 0.1, 2.0, np.nan],
        "tpot_s": [0.01, np.nan, 0.01, np.nan],
        "e2e_s": [1.0, 0.1, 3.0, np.nan],
        "slo_class": ["default"] * 4,
    })
    met = slo_met(table, {"default": ServiceClass("default", 0, 1.0, 0.05, None, None)})
    assert met.tolist() == [True, True, False, False]


def test_slo_met_uses_each_requests_own_class():
    table = pd.DataFrame({
        "state": ["finished", "finished", "dropped"],
        "ttft_s": [0.5, 0.5, np.nan],
        "tpot_s": [0.01, 0.01, np.nan],
        "e2e_s": [1.0, 1.0, np.nan],
        "slo_class": ["tight", "loose", "loose"],
    })
    classes = {
        "tight": ServiceClass("tight", 0, 0.2, None, None, None),
        "loose": ServiceClass("loose", 1, 2.0, None, None, 10.0),
    }
    assert slo_met(table, classes).tolist() == [False, True, False]
