"""Request classes: assignment by share, rule or column; per-class objectives, timeouts and summary."""
import numpy as np
import pandas as pd
import pytest

from servesim.sim.errors import ConfigError
from servesim.sim.experiment.loading import validate_config
from servesim.sim.runner import prepare, run_experiment

BASE = {
    "cost_model": {"kind": "constant", "iteration_s": 0.01},
    "workload": {
        "arrival": {"process": "poisson", "rate": 20.0},
        "prompt_tokens": {"dist": "uniform", "min": 10, "max": 400},
        "output_tokens": {"dist": "fixed", "value": 4},
        "num_requests": 400,
    },
    "slo": {"ttft_s": 0.5},
}


def with_classes(classes, class_by="share", **workload):
    return validate_config(
        {**BASE, "workload": {**BASE["workload"], "classes": classes, "class_by": class_by, **workload}}
    )


def test_shares_split_requests_at_random_in_proportion():
    config = with_classes([{"name": "gold", "share": 0.25, "priority": 0},
                           {"name": "bronze", "share": 0.75, "priority": 2}])
    table = prepare(config).workload.table()
    share = (table["slo_class"] == "gold").mean()
    assert 0.18 < share < 0.32
    assert set(table.loc[table["slo_class"] == "bronze", "priority"]) == {2}


def test_rules_take_the_first_matching_class():
    config = with_classes(
        [{"name": "short", "when": {"max_prompt_tokens": 100}}, {"name": "rest"}], class_by="rule"
    )
    table = prepare(config).workload.table()
    short = table["slo_class"] == "short"
    assert (table.loc[short, "prompt_tokens"] <= 100).all() and (table.loc[~short, "prompt_tokens"] > 100).all()


def test_a_request_matching_no_rule_is_an_error_naming_it():
    config = with_classes([{"name": "short", "when": {"max_prompt_tokens": 100}}], class_by="rule")
    with pytest.raises(ConfigError, match="matches no class rule"):
        prepare(config)


def test_classes_from_a_trace_column_must_be_defined(tmp_path):
    trace = tmp_path / "t.csv"
    pd.DataFrame({"arrival_s": [0.0, 0.1], "prompt_tokens": [5, 5], "output_tokens": [2, 2],
                  "slo_class": ["chat", "agent"]}).to_csv(trace, index=False)
    data = {**BASE, "workload": {"trace": {"path": str(trace), "format": "csv"}, "class_by": "column",
                                 "classes": [{"name": "chat", "slo": {"ttft_s": 0.05}}]}}
    with pytest.raises(ConfigError, match="agent"):
        prepare(validate_config(data))
    data["workload"]["classes"].append({"name": "agent", "priority": 1})
    table = prepare(validate_config(data)).workload.table()
    assert table["priority"].tolist() == [0, 1]


def test_shares_must_add_up_to_one():
    with pytest.raises(ConfigError, match="add up to 1"):
        with_classes([{"name": "a", "share": 0.5}, {"name": "b", "share": 0.3}])


def test_each_class_is_judged_by_its_own_objectives_and_reported_apart():
    config = with_classes([
        {"name": "tight", "share": 0.5, "slo": {"ttft_s": 0.001}},
        {"name": "loose", "share": 0.5},
    ])
    result = run_experiment(config)
    classes = result.summary["classes"]
    assert classes["tight"]["slo"]["ttft_s"] == 0.001 and classes["loose"]["slo"]["ttft_s"] == 0.5
    assert classes["tight"]["slo"]["attainment"] == 0.0
    assert classes["loose"]["slo"]["attainment"] > 0.9
    table = result.requests
    assert classes["tight"]["num_requests"] == int((table["slo_class"] == "tight").sum())
    overall = result.summary["slo"]["attainment"]
    assert overall == pytest.approx(table["slo_met"].mean())


def test_a_class_timeout_drops_requests_that_wait_too_long():
    data = {**BASE, "scheduler": {"name": "vllm", "max_num_seqs": 1},
            "workload": {**BASE["workload"], "arrival": {"process": "batch"}, "num_requests": 50,
                         "classes": [{"name": "impatient", "share": 1.0, "timeout_s": 0.05}]}}
    result = run_experiment(validate_config(data))
    table = result.requests
    dropped = table["state"] == "dropped"
    assert dropped.sum() > 0 and result.summary["num_dropped"] == int(dropped.sum())
    assert np.allclose(table.loc[dropped, "finish_s"], 0.05)
    assert not table.loc[dropped, "slo_met"].any()
