"""validate-real takes the link between the run's GPUs from the run's box description."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from servesim.sim.validation.real_runs import read_run
from servesim.sim.validation.replay import ReplayOptions, replay, replay_config

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "real_run_sample"


def _vllm_run(tmp_path: Path, cluster: dict | None, tp: int = 2) -> Path:
    rows = [{"input_toks": 100, "output_toks": 3, "queued_ts": 500.0, "first_token_ts": 500.25,
             "last_token_ts": 500.45}]
    (tmp_path / "vllm_requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    meta = {"model": "Qwen/Qwen3-32B", "vllm_version": "0.19.0", "engine_kwargs": {"tensor_parallel_size": tp}}
    (tmp_path / "vllm_meta.json").write_text(json.dumps(meta))
    if cluster is not None:
        (tmp_path / "config.json").write_text(json.dumps(cluster))
    return tmp_path


def test_the_link_comes_from_config_json_in_gbps_and_nanoseconds(tmp_path: Path) -> None:
    cluster = {"link_bw": 16, "link_latency": 20000,
               "nodes": [{"instances": [{"hardware": "RTXPRO6000", "tp_size": 2}]}]}
    settings = read_run(_vllm_run(tmp_path, cluster)).settings
    assert (settings.hardware, settings.link_gbps, settings.link_latency_us) == ("RTXPRO6000", 16.0, 20.0)
    config, notes = replay_config(read_run(tmp_path), ReplayOptions())
    assert config["cost_model"] == {"kind": "auto", "link_gbps": 16.0, "link_latency_us": 20.0}
    assert any("recorded link (16.0 GB/s, 20.0 us latency)" in note for note in notes)


def test_without_a_recorded_link_the_measured_collectives_stay(tmp_path: Path) -> None:
    meta_only = _vllm_run(tmp_path, None)
    meta = json.loads((meta_only / "vllm_meta.json").read_text())
    meta["hardware"] = {"device_name": "RTXPRO6000"}
    (meta_only / "vllm_meta.json").write_text(json.dumps(meta))
    settings = read_run(meta_only).settings
    assert settings.link_gbps is None and settings.link_latency_us is None
    config, notes = replay_config(read_run(meta_only), ReplayOptions())
    assert config["cost_model"] == {"kind": "auto"} and not any("link" in note for note in notes)


@pytest.mark.parametrize("link", [None, 16.0])
def test_the_neutral_layout_link_reaches_the_run_summary(tmp_path: Path, link: float | None) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(SAMPLE, run_dir)
    engine = yaml.safe_load((run_dir / "engine.yaml").read_text())
    if link is not None:
        engine.update(link_gbps=link, link_latency_us=20.0)
    (run_dir / "engine.yaml").write_text(yaml.safe_dump(engine))
    options = ReplayOptions(hardware="rtx-pro-6000", model="qwen3-32b", overrides=["cluster.parallel.tp=2"])
    described = replay(read_run(run_dir), options, tmp_path).result.summary["run"]["cost_model"]
    if link is None:
        assert described["collectives"] == "tables" and described["link_gbps"] == 64
    else:
        assert described["collectives"] == "roofline on the link"
        assert (described["link_gbps"], described["link_latency_us"]) == (16.0, 20.0)
        assert "tp_all_reduce" in described["roofline_operators"]
