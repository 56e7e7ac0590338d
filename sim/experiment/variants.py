"""Variants: one experiment run several ways on the same workload, and a claim checked across them.

A variant overrides some keys of the experiment. Mappings merge key by key, except a mapping
with a `name` key (a policy section such as `scheduler`), which replaces the base one whole, so
a variant never inherits parameters of another policy.
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

import numpy as np

from servesim.sim.experiment.capacity import KvCapacity
from servesim.sim.experiment.classes import DEFAULT_CLASS, ServiceClass
from servesim.sim.experiment.config import ClaimConfig, ExperimentConfig, SloConfig
from servesim.sim.reporting.results import request_table
from servesim.sim.reporting.streamed_stats import ArraySample
from servesim.sim.reporting.summary import summarize, summarize_classes

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
    base = config.model_dump(mode="json", exclude={"variants", "claim", "claims"}, exclude_none=True)
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


# Numeric keys of the sections the runner adds to the summary (kept in step by a test on a real run).
RUNNER_SECTIONS = {
    "engine": ("iterations", "engine_steps", "interrupts"),
    "memory": ("kv_blocks_per_replica", "kv_bytes", *(f.name for f in fields(KvCapacity))),
    "cache": ("prefix_caching", "hit_tokens", "hit_rate", "num_swaps", "num_dropped"),
    "run": ("wall_s", "seed"),
}
DISAGGREGATED_SECTIONS = {
    "disaggregation": ("num_transfers", "kv_bytes", "ttft_share", "max_waiting_for_blocks"),
}
"""Figures only a run with a prefill pool has (`sim.reporting.pools_summary`)."""
CLASS_KEY = "<class>"


def summary_metric_paths() -> list[str]:
    """Every numeric key path of summary.json; `classes.<class>.` stands for any class name.

    The core keys come from summarizing an empty run, so they cannot drift from the summary.
    """
    table = request_table([], {})
    summary = summarize(table, ArraySample(np.empty(0)), SloConfig(), 0.0)
    placeholder = {CLASS_KEY: ServiceClass(CLASS_KEY, 0, None, None, None, None)}
    summary["classes"] = summarize_classes(table, placeholder)
    sections = {**RUNNER_SECTIONS, **DISAGGREGATED_SECTIONS}
    summary.update({section: dict.fromkeys(keys, 0) for section, keys in sections.items()})
    return _leaf_paths(summary)


def _leaf_paths(node: Mapping[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        paths += _leaf_paths(value, f"{path}.") if isinstance(value, Mapping) else [path]
    return paths


def claim_metric_problems(config: ExperimentConfig) -> list[str]:
    """Why each claim whose metric names no number of summary.json cannot be checked."""
    return [problem for key, claim in config.stated_claims
            if (problem := claim_metric_problem(config, key, claim.metric)) is not None]


def claim_metric_problem(config: ExperimentConfig, key: str, wanted: str) -> str | None:
    """Why `wanted`, the metric of the claim stated under `key`, names no number of summary.json (None if it does)."""
    parts = wanted.split(".")
    classes = [c.name for c in config.workload.classes] or (
        [] if config.workload.class_by == "column" else [DEFAULT_CLASS]
    )
    if len(parts) > 1 and parts[0] == "classes":
        if classes and parts[1] not in classes:
            return f"{key}.metric: {wanted!r} names class {parts[1]!r}; the classes are {', '.join(classes)}"
        parts[1] = CLASS_KEY
    generic = ".".join(parts)
    paths = summary_metric_paths()
    if generic in paths:
        return None
    below = sorted({p.removeprefix(f"{generic}.").split(".")[0] for p in paths if p.startswith(f"{generic}.")})
    if below:
        return f"{key}.metric: {wanted!r} is a group of figures, not one; add one of its keys: {', '.join(below)}"
    shown = [p.replace(CLASS_KEY, classes[0] if classes else CLASS_KEY) for p in paths]
    close = difflib.get_close_matches(wanted, shown, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(map(repr, close))}?" if close else "see the README's summary.json reference"
    return f"{key}.metric: {wanted!r} is not a key path of summary.json; {hint}"


def check_claim(claim: ClaimConfig, summaries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Whether the claimed variant beats every baseline on the claim's metric."""
    value = metric(summaries[claim.variant], claim.metric)
    baselines = {name: metric(summaries[name], claim.metric) for name in claim.baselines}
    if claim.better == "lower":
        holds = all(value < b for b in baselines.values())
    else:
        holds = all(value > b for b in baselines.values())
    return {**claim.model_dump(mode="json"), "value": value, "baseline_values": baselines, "holds": bool(holds)}


def comparison_json(summaries: Mapping[str, Mapping[str, Any]], claims: Sequence[ClaimConfig]) -> dict[str, Any]:
    """What `comparison.json` holds: the compared metrics of each variant and each claim's verdict
    (`claim` is the first one's, as when a config could state only one)."""
    paths = [path for path, _ in COMPARED] + [claim.metric for claim in claims]
    verdicts = [check_claim(claim, summaries) for claim in claims]
    return {
        "variants": {name: {path: metric(summary, path) for path in paths} for name, summary in summaries.items()},
        "claim": verdicts[0] if verdicts else None,
        "claims": verdicts,
    }


def comparison_table(summaries: Mapping[str, Mapping[str, Any]], claims: Sequence[ClaimConfig]) -> str:
    """The variants side by side on the usual metrics (and the claims'), then each claim's verdict."""
    columns = list(COMPARED)
    for claim in claims:
        if claim.metric not in dict(columns):
            columns.append((claim.metric, claim.metric))
    width = max(len(name) for name in [*summaries, "variant"]) + 2
    widths = [max(12, len(label) + 2) for _, label in columns]
    lines = [f"{'variant':<{width}}" + "".join(f"{label:>{w}}" for (_, label), w in zip(columns, widths, strict=True))]
    for name, summary in summaries.items():
        cells = (f"{_shown(metric(summary, path)):>{w}}" for (path, _), w in zip(columns, widths, strict=True))
        lines.append(f"{name:<{width}}" + "".join(cells))
    for claim in claims:
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
