"""Expanding a sweep: grid, zip, variants and seeds into validated, deterministically named points."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.sim.errors import ConfigError
from servesim.sim.experiment.sweep_points import expand_sweep, swept_columns
from tests.sweep.configs import tiny_config


def test_grid_is_the_cartesian_product_in_the_order_written():
    points = expand_sweep(tiny_config({"grid": {"cluster.replicas": [1, 2], "scheduler.max_num_seqs": [4, 8, 16]}}))
    assert [p.name for p in points] == [f"p{i:04d}" for i in range(6)]
    assert [(p.config.cluster.replicas, p.config.scheduler.params()["max_num_seqs"]) for p in points] == [
        (1, 4), (1, 8), (1, 16), (2, 4), (2, 8), (2, 16)]
    assert points[4].label == "cluster.replicas=2, scheduler.max_num_seqs=8"
    assert points[4].values == {"cluster.replicas": 2, "scheduler.max_num_seqs": 8}
    assert points[4].config.name == "tiny/p0004"
    assert points[4].config.sweep is None


def test_zip_advances_its_lists_together():
    points = expand_sweep(tiny_config({"zip": {"workload.rate_scale": [1, 2, 4], "slo.ttft_s": [0.4, 0.2, 0.1]}}))
    assert [(p.config.workload.rate_scale, p.config.slo.ttft_s) for p in points] == [(1, 0.4), (2, 0.2), (4, 0.1)]


def test_variants_merge_like_experiment_variants_and_grid_keys_apply_on_top():
    config = tiny_config({"variants": {"vllm": {}, "sarathi": {"scheduler": {"name": "sarathi"}}},
                          "grid": {"scheduler.max_num_batched_tokens": [256, 512]}, "seeds": [3, 4]})
    points = expand_sweep(config)
    assert swept_columns(config.sweep) == ["variant", "scheduler.max_num_batched_tokens", "seed"]
    assert len(points) == 8
    sarathi = points[4]
    assert sarathi.label == "sarathi, scheduler.max_num_batched_tokens=256, seed=3"
    assert sarathi.config.scheduler.name == "sarathi"
    assert sarathi.config.scheduler.params() == {"max_num_batched_tokens": 256}
    assert [p.config.seed for p in points[:2]] == [3, 4]
    assert config.sweep.variants["sarathi"] == {"scheduler": {"name": "sarathi"}}  # the config is not mutated


def test_names_widen_past_ten_thousand_points_and_mapping_values_are_labelled_as_json():
    points = expand_sweep(tiny_config({"grid": {"seed": list(range(101)), "workload.rate_scale": list(range(1, 101))}}))
    assert points[-1].name == "p10099" and points[0].name == "p00000"
    labelled = expand_sweep(tiny_config({"grid": {"workload.arrival": [{"rate": 5.0}]}}))
    assert labelled[0].label == 'workload.arrival={"rate":5.0}'


@pytest.mark.parametrize(("sweep", "fragment"), [
    ({}, "at least one of"),
    ({"grid": {"cluster.replicas": []}}, "empty list"),
    ({"zip": {"seed": [1, 2], "workload.rate_scale": [1]}}, "need one length"),
    ({"grid": {"seed": [1]}, "zip": {"seed": [2]}}, "both `grid` and `zip`"),
    ({"grid": {"seed": [1]}, "seeds": [2]}, "swept twice"),
    ({"grid": {"name": ["a"]}}, "cannot be swept"),
    ({"grid": {"cluster.replica": [1]}}, "did you mean 'replicas'"),
    ({"grid": {"seed.x": [1]}}, "seed is a value, not a section"),
    ({"grid": {"cluster..replicas": [1]}}, "not a dotted config key"),
    ({"seeds": []}, "empty list"),
])
def test_bad_sweep_blocks_name_the_key(sweep, fragment):
    with pytest.raises(ConfigError, match="sweep") as info:
        tiny_config(sweep)
    assert fragment in str(info.value)


def test_every_invalid_point_is_reported_before_anything_runs():
    config = tiny_config({"grid": {"cluster.replicas": [1, 0, -1], "scheduler.max_num_seqs": [4]}})
    with pytest.raises(ConfigError) as info:
        expand_sweep(config, "sweep.yaml")
    message = str(info.value)
    assert "2 of the sweep's 3 points are invalid" in message
    assert "p0001 (cluster.replicas=0, scheduler.max_num_seqs=4)" in message and "p0002" in message


def test_a_policy_parameter_the_variant_lacks_is_refused():
    config = tiny_config({"variants": {"sarathi": {"scheduler": {"name": "sarathi"}}},
                          "grid": {"scheduler.prefill_first": [True]}})
    with pytest.raises(ConfigError, match="prefill_first"):
        expand_sweep(config)


def test_a_sweep_with_top_level_variants_is_refused():
    with pytest.raises(ConfigError, match="sweep.variants"):
        tiny_config({"seeds": [0]}, variants={"a": {}})


@settings(max_examples=40)
@given(grid=st.lists(st.integers(1, 3), max_size=3), zipped=st.integers(0, 3), variants=st.integers(0, 3),
       seeds=st.integers(0, 3))
def test_the_number_of_points_is_the_product_of_the_axis_sizes(grid, zipped, variants, seeds):
    keys = ["scheduler.max_num_seqs", "memory.block_size", "workload.rate_scale"]
    sweep = {"grid": {key: list(range(1, n + 1)) for key, n in zip(keys, grid, strict=False)}}
    if zipped:
        sweep["zip"] = {"slo.ttft_s": [0.1 * (i + 1) for i in range(zipped)],
                        "cluster.replicas": list(range(1, zipped + 1))}
    if variants:
        sweep["variants"] = {f"v{i}": {} for i in range(variants)}
    if seeds:
        sweep["seeds"] = list(range(seeds))
    if not (grid or zipped or variants or seeds):
        return
    points = expand_sweep(tiny_config(sweep))
    expected = math.prod(grid) * max(zipped, 1) * max(variants, 1) * max(seeds, 1)
    assert len(points) == expected
    assert len({p.name for p in points}) == expected
    assert len({p.label for p in points}) == expected
    assert all(p.values.keys() == set(swept_columns(tiny_config(sweep).sweep)) for p in points)
