"""Variants: one experiment run several ways on the same workload, and a claim checked across them.

A variant overrides some keys of the experiment. Mappings merge key by key, except a mapping
with a `name` key (a policy section such as `scheduler`), which replaces the base one whole, so
a variant never inherits parameters of another policy.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from servesim.sim.experiment.config import ClaimConfig, ExperimentConfig

COMPARED = (
    ("ttft_s.p50", "TTFT p50"),
    ("ttft_s.p99", "TTFT p99"),
    ("tbt_s.p99", "TBT p99"),
    ("e2e_s.p50", "E2E p50"),
    ("throughput.output_tokens_per_s", "out tok/s"),
    ("slo.attainment", "SLO att."),
    ("slo.goodput_requests_per_s", "goodput"),
    ("num_preemptions", "preempt."),
)


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `override` applied (see the module docstring)."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping) and "name" not in value:
            merged[key] = merge(current, value)
        else:
            merged[key] = value
    return merged


def variant_data(config: ExperimentConfig) -> dict[str, dict[str, Any]]:
    """The full config data of each variant, named `<experiment>/<variant>`."""
    base = config.model_dump(mode="json", exclude={"variants", "claim"}, exclude_none=True)
    return {
        name: merge(base, {**override, "name": f"{config.name}/{name}"}) for name, override in config.variants.items()
    }


def metric(summary: Mapping[str, Any], path: str) -> float:
    """The value at a dotted key path of a summary (NaN when absent or null)."""
    node: Any = summary
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return math.nan
        node = node[part]
    return math.nan if node is None else float(node)


def check_claim(claim: ClaimConfig, summaries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Whether the claimed variant beats every baseline on the claim's metric."""
    value = metric(summaries[claim.variant], claim.metric)
    baselines = {name: metric(summaries[name], claim.metric) for name in claim.baselines}
    if claim.better == "lower":
        holds = all(value < b for b in baselines.values())
    else:
        holds = all(value > b for b in baselines.values())
    return {**claim.model_dump(mode="json"), "value": value, "baseline_values": baselines, "holds": bool(holds)}


def comparison_json(summaries: Mapping[str, Mapping[str, Any]], claim: ClaimConfig | None) -> dict[str, Any]:
    """What `comparison.json` holds: the compared metrics of each variant and the claim's verdict."""
    paths = [path for path, _ in COMPARED] + ([claim.metric] if claim is not None else [])
    return {
        "variants": {name: {path: metric(summary, path) for path in paths} for name, summary in summaries.items()},
        "claim": check_claim(claim, summaries) if claim is not None else None,
    }


def comparison_table(summaries: Mapping[str, Mapping[str, Any]], claim: ClaimConfig | None) -> str:
    """The variants side by side on the usual metrics (and the claim's), then the claim's verdict."""
    columns = list(COMPARED)
    if claim is not None and claim.metric not in dict(columns):
        columns.append((claim.metric, claim.metric))
    width = max(len(name) for name in [*summaries, "variant"]) + 2
    widths = [max(12, len(label) + 2) for _, label in columns]
    lines = [f"{'variant':<{width}}" + "".join(f"{label:>{w}}" for (_, label), w in zip(columns, widths))]
    for name, summary in summaries.items():
        cells = (f"{_shown(metric(summary, path)):>{w}}" for (path, _), w in zip(columns, widths))
        lines.append(f"{name:<{width}}" + "".join(cells))
    if claim is not None:
        verdict = check_claim(claim, summaries)
        against = ", ".join(f"{n} {_shown(v)}" for n, v in verdict["baseline_values"].items())
        lines.append(
            f"claim: {claim.variant} has {claim.better} {claim.metric} than {', '.join(claim.baselines)}: "
            f"{_shown(verdict['value'])} vs {against} -> {'holds' if verdict['holds'] else 'does NOT hold'}"
        )
        if claim.source:
            lines.append(f"  ({claim.source})")
    return "\n".join(lines)


def _shown(value: float) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"
