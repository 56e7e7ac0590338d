"""A claim's metric must name a number of summary.json: checked at validation, with suggestions."""
import pytest

from servesim.sim.errors import ConfigError
from servesim.sim.experiment.config import ExperimentConfig
from servesim.sim.experiment.loading import validate_config
from servesim.sim.experiment.variants import CLASS_KEY, DISAGGREGATED_SECTIONS, summary_metric_paths
from servesim.sim.runner import run_experiment

BASE = {
    "cost_model": {"kind": "constant"},
    "workload": {"arrival": {"process": "poisson", "rate": 5.0}, "prompt_tokens": {"dist": "fixed", "value": 50},
                 "output_tokens": {"dist": "fixed", "value": 5}, "num_requests": 10,
                 "classes": [{"name": "gold", "share": 0.5}, {"name": "free", "share": 0.5}]},
    "variants": {"a": {}, "b": {"seed": 1}},
}


def with_claim(metric: str) -> dict:
    return {**BASE, "claim": {"metric": metric, "better": "lower", "variant": "a", "baselines": ["b"]}}


def numeric_paths(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from numeric_paths(value, f"{prefix}{key}.")
        elif value is None or isinstance(value, (int, float)):
            yield f"{prefix}{key}"


def test_the_metric_paths_are_exactly_the_numbers_of_a_real_summary():
    config = ExperimentConfig.model_validate({k: v for k, v in BASE.items() if k != "variants"})
    summary = run_experiment(config).summary
    what_was_run = ("run.cost_model.", "run.replicas", "run.parallel.")  # not figures
    real = {p.replace("classes.gold.", f"classes.{CLASS_KEY}.") for p in numeric_paths(summary)
            if ".free." not in p and not p.startswith(what_was_run)}
    disaggregated = tuple(f"{section}." for section in DISAGGREGATED_SECTIONS)
    assert real == {path for path in summary_metric_paths() if not path.startswith(disaggregated)}


def test_a_disaggregated_runs_claimable_figures_are_in_its_summary():
    pools = [{"name": "p", "role": "prefill"}, {"name": "d", "role": "decode"}]
    data = {k: v for k, v in BASE.items() if k != "variants"}
    config = ExperimentConfig.model_validate({**data, "cluster": {"pools": pools}})
    summary = run_experiment(config).summary
    for section, keys in DISAGGREGATED_SECTIONS.items():
        assert all(isinstance(summary[section][key], (int, float)) for key in keys)


@pytest.mark.parametrize("metric", ["ttft_s.p99", "slo.goodput_requests_per_s", "classes.gold.e2e_s.p50",
                                    "memory.num_blocks", "cache.hit_rate"])
def test_claims_on_real_numbers_validate(metric):
    assert validate_config(with_claim(metric)).claim.metric == metric


@pytest.mark.parametrize(("metric", "message"), [
    ("ttft_s.p95", "did you mean 'ttft_s.p99'"),
    ("tbt_s", "group of figures, not one; add one of its keys: max, mean, p50, p90, p99"),
    ("classes.silver.ttft_s.p99", "names class 'silver'; the classes are gold, free"),
    ("classes.gold.ttft_s.p95", "did you mean 'classes.gold.ttft_s.p99'"),
    ("run.model", "not a key path of summary.json"),
    ("throughput", "add one of its keys: duration_s"),
])
def test_a_metric_that_names_no_number_is_an_error_with_a_suggestion(metric, message):
    with pytest.raises(ConfigError, match="claim.metric") as caught:
        validate_config(with_claim(metric))
    assert message in str(caught.value)


def test_any_class_name_is_accepted_when_classes_come_from_the_trace():
    data = with_claim("classes.whatever.ttft_s.p99")
    data["workload"] = {"trace": {"sample": "azure_conv", "format": "azure"}, "class_by": "column"}
    assert validate_config(data).claim is not None
