"""The headline table `simrun run` prints after a run."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.1f}"


def headline(summary: dict[str, Any], out_dir: Path | None = None) -> str:
    lines = [
        f"requests: {summary['num_requests']} ({summary['num_finished']} finished, "
        f"{summary['num_rejected']} rejected, {summary['num_preemptions']} preemptions)",
        f"{'latency (ms)':<14}{'mean':>10}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}",
    ]
    for key, label in (("ttft_s", "TTFT"), ("tbt_s", "TBT"), ("tpot_s", "TPOT"), ("e2e_s", "E2E"), ("queue_s", "queueing")):
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
    cost = summary["run"].get("cost_model", {})
    if cost.get("kind") == "table":
        lines.append(f"cost tables: {cost['tables']} ({cost['source']}); "
                     f"{cost['out_of_grid_calls']} pricings outside the grid")
    if out_dir is not None:
        lines.append(f"results: {out_dir}")
    return "\n".join(lines)
