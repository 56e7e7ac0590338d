"""Dynamic roles end to end: switches drain, move instances between prefill and decode, and keep
every invariant (no request lost, KV blocks conserved, never a role without an instance).

Iterations cost a constant 10 ms; prefill and decode instances sit on separate nodes joined by a
1 GB/s link (see test_disaggregation). The policy's thresholds are tiny so that small traces switch.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servesim.sim.api import run_experiment
from servesim.sim.experiment.loading import validate_config
from servesim.sim.reporting.headline import headline
from servesim.sim.reporting.results import RunResult

EAGER = {"interval_s": 0.02, "cooldown_s": 0.0, "prefill_tokens_high": 200, "decode_seqs_high": 2}
SHIFT = [(i * 0.01, 600, 2) for i in range(20)] + [(0.5 + i * 0.01, 10, 30) for i in range(30)]
"""Long prompts with one-token answers, then short prompts with long answers."""


def _run(rows: list[tuple[float, int, int]], switching: dict[str, Any] | None, prefill: int = 2, decode: int = 2,
         decode_blocks: int | None = None) -> RunResult:
    memory = {"memory": {"num_kv_blocks": decode_blocks}} if decode_blocks else {}
    cluster: dict[str, Any] = {
        "pools": [{"name": "p", "role": "prefill", "replicas": prefill},
                  {"name": "d", "role": "decode", "replicas": decode, **memory}],
        "topology": {"devices_per_node": 1, "inter_node": {"gbps": 1.0, "latency_us": 0.0}},
    }
    if switching is not None:
        cluster["role_switching"] = switching
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace.csv"
        pd.DataFrame(sorted(rows), columns=["arrival_s", "prompt_tokens", "output_tokens"]).to_csv(trace, index=False)
        config = validate_config({
            "name": "roles", "model": "llama-3.1-8b", "cluster": cluster, "memory": {"max_model_len": 1000},
            "cost_model": {"kind": "constant", "iteration_s": 0.01},
            "workload": {"trace": {"path": str(trace), "format": "csv"}},
        })
        return run_experiment(config)


def _accepting(result: RunResult, role: str, replica: int, start_role: str) -> list[tuple[float, float]]:
    """The intervals during which `replica` took new work of `role`: from when it switched to the role
    (or the start) until a switch away from it was decided (or the end)."""
    switches = result.table("role_switches")
    rows = switches[switches["replica"] == replica].sort_values("decided_s")
    intervals, since = [], 0.0 if start_role == role else None
    for row in rows.itertuples():
        if row.from_role == role and since is not None:
            intervals.append((since, row.decided_s))
            since = None
        if row.to_role == role:
            since = row.switched_s
    if since is not None:
        intervals.append((since, float("inf")))
    return intervals


def _check_run(result: RunResult, prefill: int, decode: int) -> None:
    requests = result.requests.set_index("request_id")
    assert set(requests["state"]) <= {"finished", "rejected"}
    transfers = result.table("transfers")
    finished = requests[requests["state"] == "finished"]
    assert sorted(transfers["request_id"]) == sorted(finished.index[finished["output_tokens"] > 1])
    start_roles = ["prefill"] * prefill + ["decode"] * decode
    for replica, start in enumerate(start_roles):
        decode_spans = _accepting(result, "decode", replica, start)
        planned = transfers.loc[transfers["decode_replica"] == replica, "prefill_start_s"]
        assert all(any(a <= t <= b for a, b in decode_spans) for t in planned), (replica, decode_spans)
        prefill_spans = _accepting(result, "prefill", replica, start)
        arrived = requests.loc[requests["replica"] == replica]
        arrived = arrived[arrived["output_tokens"] == 1]["arrival_s"]  # served whole by a prefill instance
        routed = transfers.loc[transfers["prefill_replica"] == replica, "request_id"]
        times = [*arrived, *requests.loc[routed, "arrival_s"]]
        assert all(any(a <= t <= b for a, b in prefill_spans) for t in times), (replica, prefill_spans)
    counts = result.table("role_counts")
    latest: dict[tuple[str, str], int] = {}
    for _, rows_at in counts.groupby("time_s", sort=True):  # a switch writes both of its rows at once
        latest.update({(row.pool, row.role): row.num_replicas for row in rows_at.itertuples()})
        by_role = {role: sum(n for (_, r), n in latest.items() if r == role) for role in ("prefill", "decode")}
        assert sum(by_role.values()) == prefill + decode
        assert min(by_role.values()) >= 1
    summary = result.summary["role_switching"]
    assert summary["num_switches"] == len(result.table("role_switches"))
    assert all(s["drain_s"] >= 0 for s in summary["switches"])


def test_a_shifting_mix_moves_instances_to_prefill_then_back_to_decode() -> None:
    result = _run(SHIFT, EAGER)
    switches = result.table("role_switches")
    directions = list(zip(switches["from_role"], switches["to_role"], strict=True))
    assert ("decode", "prefill") in directions and ("prefill", "decode") in directions
    first_to_prefill = switches[switches["to_role"] == "prefill"]["decided_s"].min()
    assert first_to_prefill < 0.5  # during the long prompts
    assert switches[switches["to_role"] == "decode"]["decided_s"].max() > 0.5  # during the long answers
    _check_run(result, 2, 2)
    final = result.summary["role_switching"]["final_roles"]
    assert sum(n for roles in final.values() for n in roles.values()) == 4
    to_prefill = int((switches["to_role"] == "prefill").sum())
    assert f"role switches (queue_pressure): {len(switches)} ({to_prefill} to prefill, " in headline(result.summary)


def test_a_switch_pays_its_drain_and_then_switch_s() -> None:
    result = _run(SHIFT, {**EAGER, "switch_s": 0.05})
    switches = result.table("role_switches")
    assert len(switches)
    assert (switches["drained_s"] >= switches["decided_s"]).all()
    assert (switches["switched_s"] >= switches["drained_s"] + 0.05 - 1e-9).all()
    assert (switches["drain_s"] == switches["drained_s"] - switches["decided_s"]).all()
    _check_run(result, 2, 2)


def test_without_role_switching_nothing_is_written_and_roles_stay() -> None:
    result = _run(SHIFT, None)
    assert "role_switching" not in result.summary and "role_switches" not in result.files.tables


def test_the_same_config_and_seed_give_the_same_switches() -> None:
    first, second = _run(SHIFT, EAGER), _run(SHIFT, EAGER)
    pd.testing.assert_frame_equal(first.table("role_switches"), second.table("role_switches"))
    assert first.summary["role_switching"] == second.summary["role_switching"]


@settings(max_examples=20, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(st.floats(0, 0.6), st.integers(1, 700), st.integers(1, 30)), min_size=1, max_size=30),
    prefill=st.integers(1, 3),
    decode=st.integers(1, 3),
    decode_blocks=st.one_of(st.none(), st.integers(45, 120)),
    switch_s=st.sampled_from([0.0, 0.03]),
)
def test_role_switching_keeps_every_invariant(rows: list[tuple[float, int, int]], prefill: int, decode: int,
                                              decode_blocks: int | None, switch_s: float) -> None:
    """Every request ends once; transfers only go to instances taking decode work and arrivals only to
    instances taking prefill work; every role keeps an instance; KV blocks come back (the run checks)."""
    result = _run(rows, {**EAGER, "switch_s": switch_s}, prefill, decode, decode_blocks)
    _check_run(result, prefill, decode)


@pytest.mark.parametrize("policy_fault", ["last", "same_role"])
def test_a_policy_that_breaks_the_rules_is_stopped(policy_fault: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from servesim.policies import role_switch
    from servesim.policies.contract import PolicyContractError

    def decide(self: Any, load: role_switch.ClusterLoad) -> role_switch.RoleSwitch:
        instance = load.active("decode")[0]
        to_role = "prefill" if policy_fault == "last" else "decode"
        return role_switch.RoleSwitch(instance.replica, to_role)

    monkeypatch.setattr(role_switch.QueuePressureRoleSwitchPolicy, "decide", decide)
    with pytest.raises(PolicyContractError, match="last decode instance" if policy_fault == "last" else "other role"):
        _run(SHIFT, EAGER, prefill=1, decode=1)
