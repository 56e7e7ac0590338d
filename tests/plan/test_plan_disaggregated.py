"""Disaggregated candidates run end to end: a prefill pool and a decode pool searched like unified ones."""
import pandas as pd

from servesim.sim.placement.run import run_plan
from tests.plan.configs import config_of, roofline_plan, tiny_plan


def test_a_disaggregated_plan_searches_every_prefill_and_decode_split(tmp_path):
    report = run_plan(config_of(tiny_plan({"gpus": 3, "tp": [1], "modes": ["disaggregated"]})), tmp_path,
                      tmp_path / "out", jobs=1)
    table = report.table
    assert list(table["label"]) == ["prefill 1 x tp1 + decode 1 x tp1", "prefill 1 x tp1 + decode 2 x tp1",
                                    "prefill 2 x tp1 + decode 1 x tp1"]
    assert (table["status"] == "ok").all(), list(table["error"])
    assert (table["max_goodput_requests_per_s"] > 0).all()
    assert list(table["prefill_replicas"]) == [1, 1, 2] and list(table["decode_replicas"]) == [1, 2, 1]
    assert table[["tp", "pp", "replicas"]].isna().all().all()
    assert report.best is not None
    assert [pool["role"] for pool in report.best["cluster"]["pools"]] == ["prefill", "decode"]


def test_unified_and_disaggregated_candidates_compete_and_the_best_is_the_argmax(tmp_path):
    plan = {"gpus": 2, "tp": [1], "modes": ["unified", "disaggregated"], "max_rate": 200}
    report = run_plan(config_of(roofline_plan(plan)), tmp_path, tmp_path / "out", jobs=2)
    table = report.table
    assert list(table["mode"]) == ["unified", "unified", "disaggregated"]
    assert (table["status"] == "ok").all(), list(table["error"])
    best = table.loc[table["goodput_per_gpu"].idxmax()]
    assert report.best["candidate"] == best["candidate"] and table.loc[table["best"], "candidate"].tolist() == [
        best["candidate"]]
    again = run_plan(config_of(roofline_plan(plan)), tmp_path, tmp_path / "again", jobs=1)
    pd.testing.assert_frame_equal(again.table, table)


def test_a_base_configs_pools_lend_their_settings_to_the_candidates_of_their_role(tmp_path):
    pools = [{"name": "p", "role": "prefill", "replicas": 1},
             {"name": "d", "role": "decode", "replicas": 1, "hardware": "a100-80g", "memory": {"block_size": 32}}]
    data = tiny_plan({"gpus": 2, "tp": [1], "modes": ["disaggregated"]}, cluster={"pools": pools})
    report = run_plan(config_of(data), tmp_path, tmp_path / "out", jobs=1)
    assert list(report.table["status"]) == ["ok"]
    decode = report.best["cluster"]["pools"][1]
    assert decode["hardware"] == "a100-80g" and decode["memory"] == {"block_size": 32}
