"""validate-real: the run readers, name mapping, comparison, and replays of the shipped real runs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servesim.sim.cli import main
from servesim.sim.validation.compare import comparison, latencies, target
from servesim.sim.validation.real_runs import RealRunError, find_runs, read_run, write_neutral
from servesim.sim.validation.replay import ReplayOptions, catalog_name, replay, replay_config

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "real_run_sample"
REPO = Path(__file__).resolve().parents[2]
REAL_RUNS = next((p for p in (REPO.parent / "shared", REPO.parents[1] / "shared") if p.is_dir()),
                 REPO.parent / "shared") / "reference" / "real_vllm_runs"
STAND_INS = {"rtx-4090": "l40s"}
"""GPUs this catalog may lack, replayed on the catalog entry of the same chip family (AD102)."""


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_neutral_layout_round_trip(tmp_path: Path, fmt: str) -> None:
    run = read_run(SAMPLE)
    write_neutral(run, tmp_path, fmt)
    again = read_run(tmp_path)
    pd.testing.assert_frame_equal(again.requests, run.requests)
    assert again.settings == run.settings
    assert len(run.requests) == 24 and run.requests["arrival_s"].iloc[0] == 0.0
    assert len(run.requests["prefix_hashes"].iloc[0]) == 2358 // 16


def test_prompt_block_hashes_chain_so_only_a_shared_prefix_matches() -> None:
    from servesim.sim.validation.real_runs import block_hashes

    shared = list(range(40))
    first, second = block_hashes(shared + [1] * 8, 16), block_hashes(shared[:16] + [9] * 32, 16)
    assert len(first) == 3 and first[0] == second[0] and first[1:] != second[1:]
    assert block_hashes(list(range(15)), 16) == () and block_hashes(shared, 16) == block_hashes(shared, 16)


def test_vllm_layout_times_count_from_the_engine_queue(tmp_path: Path) -> None:
    rows = [
        {"input_toks": 100, "output_toks": 3, "arrival_time": 1.7e9, "queued_ts": 500.0, "scheduled_ts": 500.0,
         "first_token_ts": 500.25, "last_token_ts": 500.45},
        {"input_toks": 50, "output_toks": 1, "arrival_time": 1.7e9 + 1, "queued_ts": 501.0, "scheduled_ts": 501.0,
         "first_token_ts": 501.5, "last_token_ts": 501.5},
    ]
    (tmp_path / "vllm_requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    meta = {"model": "meta-llama/Llama-3.1-8B", "vllm_version": "0.19.0",
            "engine_kwargs": {"tensor_parallel_size": 1, "data_parallel_size": 2, "enable_expert_parallel": True,
                              "max_num_seqs": 64, "max_num_batched_tokens": 1024},
            "kv_cache": {"num_gpu_blocks": 900, "block_size": 16},
            "hardware": {"device_name": "NVIDIA L40S"}}
    (tmp_path / "vllm_meta.json").write_text(json.dumps(meta))
    run = read_run(tmp_path)
    assert run.requests["arrival_s"].tolist() == [0.0, 1.0]
    lat = latencies(run.requests)
    assert lat["ttft_s"] == pytest.approx([0.25, 0.5])
    assert lat["tpot_s"][0] == pytest.approx(0.1) and np.isnan(lat["tpot_s"][1])
    settings = run.settings
    assert (settings.dp, settings.ep, settings.num_gpu_blocks, settings.engine) == (2, 2, 900, "vllm 0.19.0")
    assert catalog_name("hardware", settings.hardware, None) == "l40s"


def test_names_map_through_names_yaml_and_unknown_names_say_how_to_fix() -> None:
    assert catalog_name("models", "Qwen/Qwen3-30B-A3B-Instruct-2507", None) == "qwen3-30b-a3b"
    assert catalog_name("models", "META-LLAMA/LLAMA-3.1-8B", None) == "llama-3.1-8b"
    assert catalog_name("hardware", "h100-sxm", None) == "h100-sxm"
    assert catalog_name("hardware", "RTXPRO6000", "h200") == "h200"
    with pytest.raises(RealRunError, match="--hardware NAME"):
        catalog_name("hardware", "Some Future GPU", None)
    with pytest.raises(RealRunError, match="not in the hardware catalog"):
        catalog_name("hardware", "RTXPRO6000", "no-such-gpu")


def test_comparison_of_a_run_with_itself_has_no_error_and_flags_misses() -> None:
    real = read_run(SAMPLE).requests
    table = comparison(real, real)
    assert len(table) == 14 and np.allclose(table["rel_error"], 0.0)
    slower = real.assign(finish_s=real["finish_s"] * 1.2)
    missed = comparison(real, slower).set_index(["metric", "stat"])
    assert not missed.loc[("e2e_s", "mean"), "within_target"]
    assert missed.loc[("ttft_s", "mean"), "within_target"]
    assert (target("tpot_s", "p90"), target("ttft_s", "p99"), target("requests_per_s", "value")) == (0.05, 0.15, None)


def test_cli_writes_the_table_the_plot_and_the_simulated_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["validate-real", str(SAMPLE), "--hardware", "l40s", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tpot p50 ms" in printed and "RTXPRO6000 -> l40s" in printed
    expected = {"comparison.json", "comparison.csv", "cdf.png", "summary.json", "config.yaml"}
    assert expected <= {p.name for p in out.iterdir()}
    document = json.loads((out / "comparison.json").read_text())
    assert len(document["figures"]) == 14
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_finished"] == 24


def test_replay_is_deterministic_and_keeps_the_run_settings(tmp_path: Path) -> None:
    run = read_run(SAMPLE)
    first = replay(run, ReplayOptions(hardware="l40s"), tmp_path)
    second = replay(run, ReplayOptions(hardware="l40s"), tmp_path)
    pd.testing.assert_frame_equal(first.table, second.table)
    assert first.config.scheduler.params()["max_num_seqs"] == 128
    assert first.config.engine.api_server is False
    assert first.config.cache.prefix_caching  # the sample carries block hashes; vLLM caches prefixes by default
    assert first.result.requests["arrival_s"].tolist() == pytest.approx(run.requests["arrival_s"].tolist())


def test_a_dp_ep_run_splits_the_experts_over_its_ranks_in_lockstep(tmp_path: Path) -> None:
    from dataclasses import replace

    run = read_run(SAMPLE)
    run = replace(run, settings=run.settings.model_copy(update={"dp": 2, "ep": 2}))
    options = ReplayOptions(hardware="rtx-pro-6000", model="qwen3-30b-a3b")
    config, notes = replay_config(run, options)
    assert config["cluster"]["replicas"] == 2 and config["cluster"]["parallel"]["ep_across_replicas"] is True
    assert any("ep_across_replicas=false" in note for note in notes)
    single, _ = replay_config(replace(run, settings=run.settings.model_copy(update={"dp": 2, "ep": 1})), options)
    assert "ep_across_replicas" not in single["cluster"]["parallel"]
    every_expert = ReplayOptions(hardware="rtx-pro-6000", model="qwen3-30b-a3b",
                                 overrides=["cluster.parallel.ep_across_replicas=false"])
    (tmp_path / "every").mkdir()
    unsplit = replay(run, every_expert, tmp_path / "every")
    assert "dp_lockstep" not in unsplit.result.summary["engine"]
    assert any("each replica prices every expert" in note for note in unsplit.notes)
    assert not any("ep_across_replicas=false prices" in note for note in unsplit.notes)
    summary = replay(run, options, tmp_path).result.summary
    assert summary["run"]["cost_model"]["expert_parallel_across_replicas"]["ranks"] == 2
    lockstep = summary["engine"]["dp_lockstep"]  # the ranks step together
    assert lockstep["ranks"] == 2 and 0 < lockstep["steps"] <= summary["engine"]["iterations"]


def _mappable_runs() -> list[Path]:
    return find_runs(REAL_RUNS) if REAL_RUNS.is_dir() else []


@pytest.mark.skipif(not REAL_RUNS.is_dir(),
                    reason="the shared real_vllm_runs reference data is not beside the repository")
def test_shipped_real_runs_stay_within_twice_the_real_latencies(tmp_path: Path) -> None:
    """A loose regression bound: every mapped figure within a factor 2 of the real one."""
    from servesim.sim.validation.replay import mapped_name

    checked = 0
    for run_dir in _mappable_runs():
        run = read_run(run_dir)
        options = ReplayOptions(hardware=STAND_INS.get(mapped_name("hardware", run.settings.hardware)))
        try:
            replayed = replay(run, options, tmp_path)
        except RealRunError:
            continue  # no catalog entry for this run's model or GPU on this branch
        ratio = replayed.table["simulated"] / replayed.table["real"]
        assert ((ratio > 0.5) & (ratio < 2.0)).all(), f"{run.name}:\n{replayed.table}"
        checked += 1
    assert checked >= 1
