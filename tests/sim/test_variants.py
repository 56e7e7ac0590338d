"""Variants of one experiment, run side by side, and the claim checked across them."""
import json

import pytest
import yaml

from servesim.sim.cli import main
from servesim.sim.errors import ConfigError
from servesim.sim.experiment.loading import validate_config, variant_configs
from servesim.sim.experiment.variants import merge

BASE = {
    "name": "cmp",
    "cost_model": {"kind": "constant", "iteration_s": 0.01, "per_token_s": 0.0001},
    "scheduler": {"name": "vllm", "max_num_seqs": 64},
    "workload": {
        "arrival": {"process": "poisson", "rate": 30.0},
        "prompt_tokens": {"dist": "uniform", "min": 10, "max": 300},
        "output_tokens": {"dist": "uniform", "min": 1, "max": 40},
        "num_requests": 200,
    },
    "output": {"plots": False},
    "variants": {
        "one_at_a_time": {"scheduler": {"name": "vllm", "max_num_seqs": 1}},
        "batched": {"scheduler": {"name": "sarathi"}},
    },
    "claim": {"metric": "e2e_s.p50", "better": "lower", "variant": "batched", "baselines": ["one_at_a_time"]},
}


def test_policy_sections_are_replaced_whole_and_other_sections_merged():
    merged = merge(BASE, {"scheduler": {"name": "sarathi"}, "workload": {"num_requests": 5}})
    assert merged["scheduler"] == {"name": "sarathi"}
    assert merged["workload"]["num_requests"] == 5 and merged["workload"]["arrival"]["rate"] == 30.0


def test_each_variant_is_a_whole_config_named_after_the_experiment():
    configs = variant_configs(validate_config(BASE))
    assert list(configs) == ["one_at_a_time", "batched"]
    assert configs["batched"].scheduler.name == "sarathi"
    assert "max_num_seqs" not in configs["batched"].scheduler.params()
    assert configs["one_at_a_time"].name == "cmp/one_at_a_time"
    assert configs["batched"].workload == configs["one_at_a_time"].workload


def test_a_bad_variant_is_reported_with_its_name():
    bad = {**BASE, "variants": {**BASE["variants"], "typo": {"scheduler": {"name": "sarathi", "chunk": 5}}}}
    with pytest.raises(ConfigError, match="variants.typo: scheduler: scheduler policy 'sarathi': chunk: unknown"):
        validate_config(bad)


def test_a_claim_must_name_variants():
    bad = {**BASE, "claim": {**BASE["claim"], "baselines": ["nope"]}}
    with pytest.raises(ConfigError, match="claim names variant"):
        validate_config(bad)


def test_run_writes_each_variant_and_the_comparison(tmp_path, capsys):
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(BASE))
    out = tmp_path / "res"
    assert main(["run", str(path), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "one_at_a_time" in printed and "-> holds" in printed
    assert (out / "one_at_a_time" / "summary.json").is_file() and (out / "batched" / "requests.parquet").is_file()
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["claim"]["holds"] is True
    batched = comparison["variants"]["batched"]["e2e_s.p50"]
    assert comparison["claim"]["value"] == batched < comparison["claim"]["baseline_values"]["one_at_a_time"]
