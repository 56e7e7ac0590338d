"""Strict JSON out: NaN and infinities are written as null, never as NaN/Infinity."""
import json
import math

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from servesim.sim.cli import main
from servesim.sim.reporting.json_output import finite_or_none, json_text


def strict_loads(text: str):
    def refuse(constant: str):
        raise ValueError(f"non-JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_floats_become_null_at_any_depth():
    data = {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": (2, "x"), "e": None, "f": True}
    assert finite_or_none(data) == {"a": None, "b": [1.0, None, {"c": None}], "d": [2, "x"], "e": None, "f": True}
    assert strict_loads(json_text(data))["b"] == [1.0, None, {"c": None}]


@given(st.recursive(st.floats() | st.integers() | st.text() | st.none(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)))
def test_any_data_becomes_strict_json(data):
    strict_loads(json_text(data))


def test_unserialisable_values_still_fail_loudly():
    with pytest.raises(TypeError):
        json_text({"a": object()})


def test_a_run_whose_requests_are_all_rejected_writes_null_not_nan(tmp_path, capsys):
    config = {
        "name": "rejected", "cost_model": {"kind": "constant"}, "memory": {"max_model_len": 20},
        "workload": {"arrival": {"process": "poisson", "rate": 5.0}, "prompt_tokens": {"dist": "fixed", "value": 100},
                     "output_tokens": {"dist": "fixed", "value": 10}, "num_requests": 5},
        "output": {"plots": False},
        "variants": {"a": {}, "b": {"seed": 1}},
        "claim": {"metric": "ttft_s.p99", "better": "lower", "variant": "a", "baselines": ["b"]},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "c.yaml"), "-o", str(tmp_path / "out")]) == 0
    summary = strict_loads((tmp_path / "out" / "a" / "summary.json").read_text())
    assert summary["num_rejected"] == 5
    assert summary["ttft_s"]["p99"] is None and summary["throughput"]["requests_per_s"] is None
    comparison = strict_loads((tmp_path / "out" / "comparison.json").read_text())
    assert comparison["claim"]["value"] is None and comparison["variants"]["a"]["ttft_s.p99"] is None
