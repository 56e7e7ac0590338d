"""The Ray backend runs a small sweep on a local Ray instance the test starts (Ray is in the `test` extra:
if it is not importable this test fails, it does not skip)."""
import pandas as pd
import pytest
import ray

from servesim.sim.sweeps.run import run_sweep
from tests.sweep.configs import tiny_config


@pytest.mark.xdist_group("ray")  # one local Ray instance at a time under pytest-xdist
def test_a_sweep_on_a_local_ray_instance_equals_the_local_one(tmp_path):
    config = tiny_config({"variants": {"vllm": {}, "sarathi": {"scheduler": {"name": "sarathi"}}}, "seeds": [0, 1]})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = run_sweep(config, tmp_path, tmp_path / "ray", backend="ray").table
    finally:
        ray.shutdown()
    local = run_sweep(config, tmp_path, tmp_path / "local", jobs=1).table
    assert list(on_ray["status"]) == ["ok"] * 4
    pd.testing.assert_frame_equal(on_ray.drop(columns="run.wall_s"), local.drop(columns="run.wall_s"))
    assert (tmp_path / "ray" / "points" / "p0003" / "requests.parquet").read_bytes() == (
        tmp_path / "local" / "points" / "p0003" / "requests.parquet").read_bytes()
