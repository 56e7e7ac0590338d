"""A placement search on a local Ray instance equals the local one (Ray is in the `test` extra)."""
import pandas as pd
import pytest
import ray

from servesim.sim.placement.run import run_plan
from tests.plan.configs import config_of, tiny_plan


@pytest.mark.xdist_group("ray")  # one local Ray instance at a time under pytest-xdist
def test_a_plan_on_a_local_ray_instance_equals_the_local_one(tmp_path):
    config = config_of(tiny_plan({"gpus": 2, "tp": [1, 2], "modes": ["unified"]}))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = run_plan(config, tmp_path, tmp_path / "ray", backend="ray")
    finally:
        ray.shutdown()
    local = run_plan(config, tmp_path, tmp_path / "local", jobs=1)
    assert list(on_ray.table["status"]) == ["ok"] * 3
    pd.testing.assert_frame_equal(on_ray.table, local.table)
    pd.testing.assert_frame_equal(on_ray.probes, local.probes)
