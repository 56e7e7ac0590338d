"""Prefill/decode disaggregation end to end: exact timelines, back-pressure, placement, invariants.

Iterations cost a constant 10 ms (no engine overheads), llama-3.1-8b's KV is 131,072 bytes per
token, and the prefill and decode replicas sit on separate nodes joined by a 1 GB/s link with no
latency, so a 1,000-token prompt's KV takes 131.072 ms to move.
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servesim.hwmodels.catalog import load_model
from servesim.sim.api import run_experiment
from servesim.sim.experiment.loading import validate_config
from servesim.sim.reporting.headline import headline
from servesim.sim.reporting.results import RunResult

KV_BYTES_PER_TOKEN = load_model("llama-3.1-8b").kv_bytes_per_token
ITERATION_S = 0.01
SLOW = {"devices_per_node": 1, "inter_node": {"gbps": 1.0, "latency_us": 0.0}}


def _run(pools: list[dict[str, Any]], rows: list[tuple[float, int, int]], transfer: dict[str, Any] | None = None,
         topology: dict[str, Any] | None = None, progress: Callable[[int, float], None] | None = None,
         **top: Any) -> RunResult:
    """A run of trace `rows` (arrival_s, prompt, output) through `pools` (prefill first)."""
    cluster: dict[str, Any] = {"pools": pools, "topology": SLOW if topology is None else topology}
    if transfer is not None:
        cluster["transfer"] = transfer
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace.csv"
        pd.DataFrame(rows, columns=["arrival_s", "prompt_tokens", "output_tokens"]).to_csv(trace, index=False)
        config = validate_config({
            "name": "pd", "model": "llama-3.1-8b", "cluster": cluster,
            "cost_model": {"kind": "constant", "iteration_s": ITERATION_S},
            "workload": {"trace": {"path": str(trace), "format": "csv"}},
            **top,
        })
        return run_experiment(config, progress=progress)


def _pd(prefill: dict[str, Any] | None = None, decode: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [{"name": "prefill", "role": "prefill", **(prefill or {})}, {"name": "decode", "role": "decode",
                                                                          **(decode or {})}]


def test_after_prefill_the_kv_moves_whole_and_the_first_token_arrives_with_it() -> None:
    result = _run(_pd(), [(0.0, 1000, 3)])
    transfer = result.table("transfers").iloc[0]
    request = result.requests.iloc[0]
    move_s = 1000 * KV_BYTES_PER_TOKEN / 1e9
    assert transfer["kv_bytes"] == 1000 * KV_BYTES_PER_TOKEN
    assert transfer["prefill_end_s"] == pytest.approx(ITERATION_S)
    assert transfer["reserved_s"] == pytest.approx(ITERATION_S)  # the idle decode replica reserves at once
    assert transfer["transfer_end_s"] == pytest.approx(ITERATION_S + move_s)
    assert request["ttft_s"] == pytest.approx(ITERATION_S + move_s)
    assert request["e2e_s"] == pytest.approx(ITERATION_S + move_s + 2 * ITERATION_S)
    assert (request["replica"], transfer["prefill_replica"], transfer["decode_replica"]) == (1, 0, 1)
    summary = result.summary["disaggregation"]
    assert summary["num_transfers"] == 1 and summary["handoff_s"]["max"] == pytest.approx(move_s)
    assert summary["ttft_share"] == pytest.approx(move_s / (ITERATION_S + move_s))
    text = headline(result.summary)
    assert "pools: prefill (prefill) 1 x h100-sxm TP1 PP1" in text
    assert "KV transfers (after_prefill): 1, 0.13 GB; added to TTFT: mean 131.1 ms (93% of TTFT)" in text


def test_layerwise_sends_each_layer_groups_kv_as_it_is_computed() -> None:
    """One 10 ms step, four groups: the first leaves at 2.5 ms and the link is busy from then on."""
    result = _run(_pd(), [(0.0, 1000, 3)], transfer={"name": "layerwise", "layer_groups": 4})
    transfer = result.table("transfers").iloc[0]
    move_s = 1000 * KV_BYTES_PER_TOKEN / 1e9
    assert transfer["kv_bytes"] == 1000 * KV_BYTES_PER_TOKEN
    assert transfer["transfer_start_s"] == pytest.approx(ITERATION_S / 4)
    assert result.requests.iloc[0]["ttft_s"] == pytest.approx(ITERATION_S / 4 + move_s)


def test_layerwise_beats_after_prefill_on_ttft_for_long_chunked_prompts_on_a_slow_link() -> None:
    rows = [(0.0, 4000, 4), (1.0, 3000, 4)]
    chunked = {"name": "vllm", "max_num_batched_tokens": 512}
    ttft = {name: _run(_pd({"scheduler": chunked}), rows, transfer={"name": name}).requests["ttft_s"]
            for name in ("after_prefill", "layerwise")}
    assert (ttft["layerwise"] < ttft["after_prefill"] - 0.05).all(), ttft


def test_decode_back_pressure_keeps_the_kv_on_the_prefill_side_until_its_transfer_ends() -> None:
    """The decode replica holds one 1,000-token request at a time (70 blocks); the prefill replica
    two (130 blocks). Requests 0 and 1 prefill together; 1 waits for 0 to finish decoding before
    it gets decode blocks, and request 2 gets prefill blocks only when a transfer frees them."""
    pools = _pd(prefill={"memory": {"num_kv_blocks": 130}}, decode={"memory": {"num_kv_blocks": 70}})
    result = _run(pools, [(0.0, 1000, 20), (0.0, 1000, 20), (0.0, 1000, 20)])
    transfers = result.table("transfers").set_index("request_id")
    requests = result.requests.set_index("request_id")
    assert (requests["state"] == "finished").all()
    assert transfers.loc[1, "reserved_s"] >= requests.loc[0, "finish_s"] - 1e-9
    assert transfers.loc[1, "reserved_s"] - transfers.loc[1, "queued_s"] > 0.1
    assert requests.loc[2, "first_scheduled_s"] == pytest.approx(transfers.loc[0, "transfer_end_s"], abs=ITERATION_S)
    queue = result.table("decode_queue")
    assert queue["num_waiting_for_blocks"].max() >= 1
    assert result.summary["disaggregation"]["decode_wait_s"]["max"] > 0.1


def test_a_decode_replica_on_the_prefill_replicas_node_is_preferred() -> None:
    """Two devices a node: prefill 0 and decode 1 share node 0, decode 2 is on node 1."""
    result = _run(_pd(decode={"replicas": 2}), [(t, 200, 3) for t in (0.0, 0.5, 1.0, 1.5)],
                  topology={"devices_per_node": 2})
    assert set(result.table("transfers")["decode_replica"]) == {1}


def test_a_single_token_answer_ends_on_the_prefill_replica_without_a_transfer() -> None:
    result = _run(_pd(), [(0.0, 100, 1), (0.0, 100, 2)], transfer={"name": "layerwise"})
    assert list(result.requests["replica"]) == [0, 1]
    assert list(result.table("transfers")["request_id"]) == [1]


def test_unified_pools_of_different_hardware_share_the_arrivals() -> None:
    pools = [{"name": "h100", "hardware": "h100-sxm"}, {"name": "a100", "hardware": "a100-80g", "replicas": 2}]
    config = validate_config({
        "model": "llama-3.1-8b", "cluster": {"pools": pools}, "cost_model": {"kind": "roofline"},
        "workload": {"arrival": {"rate": 20.0}, "prompt_tokens": {"dist": "fixed", "value": 256},
                     "output_tokens": {"dist": "fixed", "value": 16}, "num_requests": 30},
    })
    result = run_experiment(config)
    summary = result.summary["pools"]
    assert summary["h100"]["requests"] == 10 and summary["a100"]["requests"] == 20
    assert summary["a100"]["hardware"] == "a100-80g" and summary["a100"]["replicas"] == 2
    assert "disaggregation" not in result.summary and not result.files.tables
    series = result.replica_series
    assert set(series["replica"]) == {0, 1, 2}


SHORT_DECODE = {"memory": {"num_kv_blocks": 45}}
FAST_LINK = {"devices_per_node": 2, "inter_node": {"gbps": 50.0, "latency_us": 5.0}}


def test_a_request_preempted_on_the_decode_replica_lets_the_received_ones_behind_it_go_first() -> None:
    """Request 1 is preempted (recompute) on the 45-block decode replica; request 2 lands while
    it waits, holding its blocks, and request 1 at the head of the queue needs more than are left:
    if it stayed there, nothing would run again (the run used to end stuck). Request 2 goes first."""
    rows = [(0.07, 418, 20), (0.19, 248, 22), (0.19, 458, 30)]
    result = _run(_pd(prefill={"memory": {"num_kv_blocks": 200}}, decode=SHORT_DECODE), rows,
                  transfer={"name": "layerwise", "layer_groups": 1}, topology=FAST_LINK, memory={"max_model_len": 1000})
    requests = result.requests.set_index("request_id")
    assert (requests["state"] == "finished").all()
    assert requests.loc[1, "num_preemptions"] == 1
    assert requests.loc[2, "first_token_s"] > requests.loc[1, "first_token_s"]
    assert requests.loc[2, "finish_s"] < requests.loc[1, "finish_s"]


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(st.floats(0, 0.2), st.integers(100, 500), st.integers(2, 30)), min_size=2, max_size=6),
    transfer=st.sampled_from([{"name": "after_prefill"}, {"name": "layerwise", "layer_groups": 1}]),
    decode_blocks=st.integers(45, 70),
)
def test_a_decode_replica_short_of_memory_serves_every_request(rows: list[tuple[float, int, int]],
                                                                transfer: dict[str, Any], decode_blocks: int) -> None:
    """Bursts of long prompts into one small decode replica, which preempts while requests land
    holding their KV: every request ends, none is left on its way or queued (the run checks)."""
    result = _run(_pd(prefill={"memory": {"num_kv_blocks": 200}}, decode={"memory": {"num_kv_blocks": decode_blocks}}),
                  sorted(rows), transfer=transfer, topology=FAST_LINK, memory={"max_model_len": 1000})
    assert (result.requests["state"] == "finished").all()


@settings(max_examples=20, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(st.floats(0, 0.5), st.integers(1, 700), st.integers(1, 30)), min_size=1, max_size=10),
    transfer=st.sampled_from([{"name": "after_prefill"}, {"name": "layerwise", "layer_groups": 1},
                              {"name": "layerwise", "layer_groups": 3}]),
    decode_blocks=st.integers(45, 120),
    prefill_blocks=st.integers(45, 200),
    decode_replicas=st.integers(1, 3),
    gbps=st.sampled_from([0.5, 50.0]),
)
def test_disaggregated_runs_keep_their_invariants(rows: list[tuple[float, int, int]], transfer: dict[str, Any],
                                                  decode_blocks: int, prefill_blocks: int, decode_replicas: int,
                                                  gbps: float) -> None:
    """Every request ends; each transferred request's whole prompt KV moves once and lands before
    its first token; blocks are conserved on both sides (the run checks this at its end)."""
    rows = sorted(rows)
    pools = _pd(prefill={"memory": {"num_kv_blocks": prefill_blocks}},
                decode={"replicas": decode_replicas, "memory": {"num_kv_blocks": decode_blocks}})
    result = _run(pools, rows, transfer=transfer,
                  topology={"devices_per_node": 2, "inter_node": {"gbps": gbps, "latency_us": 5.0}},
                  memory={"max_model_len": 1000})
    requests = result.requests.set_index("request_id")
    assert set(requests["state"]) <= {"finished", "rejected"}
    finished = requests[requests["state"] == "finished"]
    transfers = result.table("transfers").set_index("request_id")
    moved = finished[finished["output_tokens"] > 1]
    assert sorted(transfers.index) == sorted(moved.index)
    assert (transfers["kv_bytes"] == moved.loc[transfers.index, "prompt_tokens"] * KV_BYTES_PER_TOKEN).all()
    assert (transfers["queued_s"] <= transfers["reserved_s"] + 1e-12).all()
    assert (transfers["prefill_end_s"] <= transfers["transfer_end_s"] + 1e-12).all()
    assert (transfers["transfer_start_s"] <= transfers["transfer_end_s"]).all()
    first_token = finished.loc[transfers.index, "first_token_s"]
    pd.testing.assert_series_equal(first_token, transfers["transfer_end_s"], check_names=False)
    assert (transfers["decode_replica"] >= 1).all() and (transfers["prefill_replica"] == 0).all()
    if len(transfers):
        network = result.summary["network"]
        aborted = result.summary["disaggregation"]["aborted_kv_bytes"]
        assert network["bytes_sent"] == network["bytes_received"]
        assert network["bytes_by_tag"]["kv"] == int(transfers["kv_bytes"].sum()) + aborted  # swaps are tagged apart
        assert len(result.table("links"))
    else:
        assert "network" not in result.summary


SRPT_ONE_AT_A_TIME = {"name": "srpt", "max_num_seqs": 1, "max_num_batched_tokens": 128, "predictor": {"name": "oracle"}}


def test_a_layerwise_prefill_preempted_gives_its_decode_blocks_back() -> None:
    """Request 0 (600 tokens, 38 decode blocks) starts its chunked prefill and reserves 38 of the
    decode replica's 45 blocks. Request 1 (shorter answer) displaces it (SRPT, one sequence at a
    time), is prefilled and waits for 13 decode blocks while holding 13 of the prefill replica's
    45: request 0 can never be prefilled again beside it. Had request 0 kept its reservation,
    neither side would move again (the run looped on request 0's recomputation for ever); its
    transfer is aborted instead, request 1 lands, and request 0 is planned anew when it runs again
    (at 40 ms, once request 1's two chunks are done)."""
    pools = _pd(prefill={"scheduler": SRPT_ONE_AT_A_TIME, "memory": {"num_kv_blocks": 45}},
                decode={"memory": {"num_kv_blocks": 45}})
    result = _run(pools, [(0.0, 600, 50), (0.02, 200, 5)], transfer={"name": "layerwise", "layer_groups": 1},
                  topology=FAST_LINK, memory={"max_model_len": 1000})
    requests = result.requests.set_index("request_id")
    assert (requests["state"] == "finished").all()
    assert requests.loc[0, "num_preemptions"] == 1
    transfers = result.table("transfers").set_index("request_id")
    assert transfers.loc[0, "prefill_start_s"] == pytest.approx(0.04)  # planned anew when it ran again
    assert transfers.loc[0, "reserved_s"] >= requests.loc[1, "finish_s"] - 1e-9  # 32 free blocks until then
    assert (transfers["kv_bytes"] == requests.loc[transfers.index, "prompt_tokens"] * KV_BYTES_PER_TOKEN).all()
    summary = result.summary["disaggregation"]
    assert summary["aborted_transfers"] == 1 and summary["aborted_kv_bytes"] > 0
    network = result.summary["network"]
    assert network["bytes_by_tag"]["kv"] == int(transfers["kv_bytes"].sum()) + summary["aborted_kv_bytes"]


PREFILL_SCHEDULERS = [
    {"name": "vllm", "max_num_batched_tokens": 64},
    {"name": "vllm", "max_num_batched_tokens": 128, "max_num_seqs": 2},
    SRPT_ONE_AT_A_TIME,
    {**SRPT_ONE_AT_A_TIME, "max_num_seqs": 2},
    {"name": "sarathi", "max_num_batched_tokens": 64, "max_num_seqs": 8},
]


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(st.floats(0, 0.3), st.integers(16, 700), st.integers(1, 40)), min_size=2, max_size=10),
    prefill_scheduler=st.sampled_from(PREFILL_SCHEDULERS),
    preemption=st.sampled_from(["recompute", "swap"]),
    layer_groups=st.integers(1, 4),
    prefill_replicas=st.integers(1, 2),
    decode_replicas=st.integers(1, 2),
    prefill_blocks=st.integers(45, 80),
    decode_blocks=st.integers(45, 80),
)
def test_layerwise_under_tight_memory_and_preemption_on_both_sides_loses_no_request(
        rows: list[tuple[float, int, int]], prefill_scheduler: dict[str, Any], preemption: str, layer_groups: int,
        prefill_replicas: int, decode_replicas: int, prefill_blocks: int, decode_blocks: int) -> None:
    """Layerwise reservations are taken while prefills that may be preempted still run, on pools
    that barely hold one long prompt: every request finishes or is rejected with a reason, and the
    run ends with nothing on its way, every block of every replica back and each pool conserved
    (the run checks those at its end and raises otherwise; a deadlock would leave requests behind).
    A run that loops without end (a livelock) is stopped after 60 simulated seconds."""
    def within_a_minute(done: int, now: float) -> None:
        assert now < 60.0, f"{done} of {len(rows)} requests done after {now:.0f} simulated seconds"

    pools = [{"name": "prefill", "role": "prefill", "replicas": prefill_replicas, "scheduler": prefill_scheduler,
              "memory": {"num_kv_blocks": prefill_blocks}},
             {"name": "decode", "role": "decode", "replicas": decode_replicas,
              "memory": {"num_kv_blocks": decode_blocks}}]
    result = _run(pools, sorted(rows), transfer={"name": "layerwise", "layer_groups": layer_groups},
                  topology=FAST_LINK, memory={"max_model_len": 1000}, preemption={"name": preemption},
                  progress=within_a_minute)
    requests = result.requests
    assert len(requests) == len(rows)
    assert set(requests["state"]) <= {"finished", "rejected"}
    assert requests.loc[requests["state"] == "rejected", "reject_reason"].str.len().gt(0).all()
    moved = requests[(requests["state"] == "finished") & (requests["output_tokens"] > 1)]
    transfers = result.table("transfers")
    assert sorted(transfers["request_id"]) == sorted(moved["request_id"])
    aborted = result.summary["disaggregation"]["aborted_kv_bytes"]
    if len(transfers):
        network = result.summary["network"]
        assert network["bytes_sent"] == network["bytes_received"]
        assert network["bytes_by_tag"]["kv"] == int(transfers["kv_bytes"].sum()) + aborted  # swaps are tagged apart
