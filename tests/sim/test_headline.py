"""The headline `simrun run` prints names what was simulated and which cost model priced it."""
import warnings

import pytest

from servesim.sim import load_config, run_experiment
from servesim.sim.reporting.headline import cost_model_label, headline, setup_line

WORKLOAD = {"arrival": {"rate": 5.0}, "prompt_tokens": {"dist": "fixed", "value": 100},
            "output_tokens": {"dist": "fixed", "value": 4}, "num_requests": 10}


def first_line(**config) -> str:
    result = run_experiment(load_config({"workload": WORKLOAD, "output": {"plots": False}, **config}))
    return headline(result.summary).splitlines()[0]


def test_it_names_model_hardware_plan_and_replicas():
    cluster = {"replicas": 3, "parallel": {"tp": 4, "pp": 2}}
    line = first_line(model="llama-3.1-70b", hardware="h100-sxm", cluster=cluster)
    assert line.startswith("llama-3.1-70b on h100-sxm: 3 replicas x TP4 PP2 (24 devices); cost model: profiled tables "
                           "hwmodels/data/tables/aiconfigurator/h100-sxm/llama-3.1-70b")


def test_it_says_the_roofline_stood_in_because_no_table_exists():
    # No tables are shipped for any model on the MI300X; servesim's own profiler's for the CPU.
    assert first_line(model="llama-2-7b", hardware="mi300x").endswith(
        "cost model: calibrated roofline (no shipped table for mi300x/llama-2-7b at TP1)")
    roofline = {"kind": "roofline"}
    assert "roofline (no profiled tables exist for llama-2-7b on mi300x)" in first_line(
        model="llama-2-7b", hardware="mi300x", cost_model=roofline)
    assert "shipped tables exist" in first_line(model="tiny-llama", hardware="cpu", cost_model=roofline)


def test_a_table_run_names_its_tables_and_the_operators_the_roofline_priced():
    data = {"model": "llama-2-7b", "hardware": "a100-80g", "cost_model": {"kind": "table"},
            "workload": WORKLOAD, "output": {"plots": False}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the operators priced by the roofline, also named in the line
        summary = run_experiment(load_config(data)).summary
    line = headline(summary).splitlines()[0]
    cost = summary["run"]["cost_model"]
    assert line.startswith(f"llama-2-7b on a100-80g: 1 replica x TP1 PP1 (1 device); cost model: profiled tables "
                           f"{cost['tables']}")
    missing = cost["roofline_operators"]
    assert (f"; roofline for {', '.join(missing)} (not in the tables)" in line) == bool(missing)


@pytest.mark.parametrize("cost, words", [
    ({"kind": "constant", "iteration_s": 0.01, "per_token_s": 0.0}, "constant (10 ms per iteration + 0 ms per token)"),
    ({"kind": "table", "tables": "DIR", "roofline_operators": []}, "profiled tables DIR"),
    ({"kind": "table", "tables": "DIR", "roofline_operators": ["lm_head", "sampling"]},
     "profiled tables DIR; roofline for lm_head, sampling (not in the tables)"),
    ({"kind": "roofline"}, "roofline (no profiled tables exist for m on h)"),
    ({"kind": "roofline", "chosen_by": "auto"}, "calibrated roofline (no shipped table for h/m at TP2)"),
    ({"kind": "roofline", "chosen_by": "auto", "efficiency": "flat shares of peak from the catalog"},
     "roofline (no shipped table for h/m at TP2)"),  # an uncalibrated device, such as the CPU
])
def test_cost_model_words(cost, words):
    assert cost_model_label(cost, "h", "m", 2) == words


def test_setup_line_from_a_summary_alone():
    run = {"model": "m", "hardware": "h", "replicas": 2, "parallel": {"tp": 1, "pp": 1},
           "cost_model": {"kind": "constant", "iteration_s": 0.001, "per_token_s": 0.0}}
    assert setup_line(run) == (
        "m on h: 2 replicas x TP1 PP1 (2 devices); cost model: constant (1 ms per iteration + 0 ms per token)"
    )
