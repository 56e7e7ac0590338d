"""The headline table `simrun run` prints after a run."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from servesim.hwmodels.tables.shipped import has_shipped_tables


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.1f}"


def setup_line(run: dict[str, Any]) -> str:
    """What was simulated: model, hardware, parallel plan, replicas and the cost model used."""
    plan = run["parallel"]
    replicas = run["replicas"]
    devices = replicas * plan["tp"] * plan["pp"]
    return (
        f"{run['model']} on {run['hardware']}: {replicas} replica{'s' if replicas != 1 else ''} x "
        f"TP{plan['tp']} PP{plan['pp']} ({devices} device{'s' if devices != 1 else ''}); "
        f"cost model: {cost_model_label(run['cost_model'], run['hardware'], run['model'], plan['tp'])}"
    )


def cost_model_label(cost: dict[str, Any], hardware: str, model: str, tp: int) -> str:
    """The cost model in words, saying where the roofline stands in for measurements."""
    kind = cost["kind"]
    if kind == "constant":
        iteration_ms, token_ms = cost["iteration_s"] * 1000, cost["per_token_s"] * 1000
        return f"constant ({iteration_ms:g} ms per iteration + {token_ms:g} ms per token)"
    if kind == "table":
        label = f"profiled tables {cost['tables']}"
        missing = cost.get("roofline_operators") or []
        return label + (f"; roofline for {', '.join(missing)} (not in the tables)" if missing else "")
    if "moe_routing" in cost:
        return f"roofline (cost_model.moe: experts priced for {cost['moe_routing']['routing']} routing)"
    if cost.get("chosen_by") == "auto":
        calibrated = "" if str(cost.get("efficiency", "")).startswith("flat shares") else "calibrated "
        return f"{calibrated}roofline (no shipped table for {hardware}/{model} at TP{tp})"
    if has_shipped_tables(hardware, model, [tp]):
        return "roofline (shipped tables exist for this model and hardware: cost_model.kind: auto or table uses them)"
    return f"roofline (no profiled tables exist for {model} on {hardware})"


def headline(summary: dict[str, Any], out_dir: Path | None = None) -> str:
    lines = [
        setup_line(summary["run"]),
        f"requests: {summary['num_requests']} ({summary['num_finished']} finished, "
        f"{summary['num_rejected']} rejected, {summary['num_preemptions']} preemptions)",
        f"{'latency (ms)':<14}{'mean':>10}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}",
    ]
    rows = (("ttft_s", "TTFT"), ("tbt_s", "TBT"), ("tpot_s", "TPOT"), ("e2e_s", "E2E"), ("queue_s", "queueing"))
    for key, label in rows:
        block = summary[key]
        lines.append(f"{label:<14}" + "".join(f"{_ms(block[s]):>10}" for s in ("mean", "p50", "p90", "p99", "max")))
    tput = summary["throughput"]
    slo = summary["slo"]
    lines += [
        f"throughput: {tput['requests_per_s']:.2f} req/s, {tput['input_tokens_per_s']:,.0f} input tok/s, "
        f"{tput['output_tokens_per_s']:,.0f} output tok/s over {tput['duration_s']:,.1f} s",
        f"SLO attainment: {slo['attainment']:.1%} (target {slo['attainment_target']:.0%}), "
        f"goodput {slo['goodput_requests_per_s']:.2f} req/s",
        f"simulated {summary['sim_time_s']:,.1f} s in {summary['run']['wall_s']:.2f} s wall",
    ]
    lines += pool_lines(summary)
    cost = summary["run"].get("cost_model", {})
    if cost.get("kind") == "table":
        lines.append(f"cost tables: {cost['tables']} ({cost['source']}); "
                     f"{cost['out_of_grid_calls']} pricings outside the grid")
    if out_dir is not None:
        lines.append(f"results: {out_dir}")
    return "\n".join(lines)


def pool_lines(summary: dict[str, Any]) -> list[str]:
    """With `cluster.pools`: each pool's size and busy share; with a prefill pool, its KV transfers; with
    dynamic roles, its switches."""
    lines = []
    if "pools" in summary:
        pools = [f"{name} ({pool['role']}) {pool['replicas']} x {pool['hardware']} TP{pool['parallel']['tp']} "
                 f"PP{pool['parallel']['pp']}, busy {pool['busy_share']:.0%}"
                 for name, pool in summary["pools"].items()]
        lines.append("pools: " + "; ".join(pools))
    moved = summary.get("disaggregation")
    if moved is not None:
        share = "-" if moved["ttft_share"] is None else f"{moved['ttft_share']:.0%}"
        lines.append(f"KV transfers ({moved['transfer']}): {moved['num_transfers']:,}, "
                     f"{moved['kv_bytes'] / 1e9:,.2f} GB; "
                     f"added to TTFT: mean {_ms(moved['handoff_s']['mean'])} ms ({share} of TTFT); "
                     f"waiting for decode blocks: p99 {_ms(moved['decode_wait_s']['p99'])} ms")
    roles = summary.get("role_switching")
    if roles is not None:
        to_prefill = sum(1 for switch in roles["switches"] if switch["to"] == "prefill")
        lines.append(f"role switches ({roles['policy']}): {roles['num_switches']} ({to_prefill} to prefill, "
                     f"{roles['num_switches'] - to_prefill} to decode); drain: p50 {_ms(roles['drain_s']['p50'])} ms, "
                     f"max {_ms(roles['drain_s']['max'])} ms")
    return lines
