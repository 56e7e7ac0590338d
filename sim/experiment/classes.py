"""Request classes: each has a priority, its own objectives and a timeout.

Real traces carry no priorities or SLO classes, so the workload assigns them: by random share,
by rules on lengths, or from the trace's `slo_class` column. Without classes every request is in
one class whose objectives are the `slo` section's (named after the trace's classes if it has any).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from servesim.sim.errors import ConfigError
from servesim.sim.experiment.config import ClassConfig, ExperimentConfig, SloConfig, WorkloadConfig

DEFAULT_CLASS = "default"


@dataclass(frozen=True)
class ServiceClass:
    """The resolved objectives of one class (None: no objective of that kind)."""

    name: str
    priority: int
    ttft_s: float | None
    tpot_s: float | None
    e2e_s: float | None
    timeout_s: float | None


def service_classes(config: ExperimentConfig, class_names: tuple[str, ...] | None) -> dict[str, ServiceClass]:
    """Every class a request can be in, with its objectives resolved against `slo`.

    `class_names`: the sorted `slo_class` values of the workload's rows (None: it has no such column).
    """
    slo = config.slo
    if config.workload.classes:
        return {c.name: _resolve(c, slo) for c in config.workload.classes}
    names = class_names if class_names is not None else [DEFAULT_CLASS]
    return {name: ServiceClass(name, 0, slo.ttft_s, slo.tpot_s, slo.e2e_s, None) for name in names}


def _resolve(spec: ClassConfig, slo: SloConfig) -> ServiceClass:
    own = spec.slo
    return ServiceClass(
        spec.name,
        spec.priority,
        own.ttft_s if own.ttft_s is not None else slo.ttft_s,
        own.tpot_s if own.tpot_s is not None else slo.tpot_s,
        own.e2e_s if own.e2e_s is not None else slo.e2e_s,
        spec.timeout_s,
    )


def assign_classes(table: pd.DataFrame, workload: WorkloadConfig, rng: np.random.Generator) -> pd.DataFrame:
    """`table` with the `slo_class` and `priority` of every request, as `workload.class_by` says."""
    classes = workload.classes
    if not classes:
        return table
    names = np.array([c.name for c in classes], dtype=object)
    if workload.class_by == "share":
        shares = [c.share for c in classes if c.share is not None]  # all of them: WorkloadConfig checks
        chosen = rng.choice(len(classes), size=len(table), p=shares)
        labels = names[chosen]
    elif workload.class_by == "rule":
        labels = _by_rule(table, classes)
    else:
        labels = _by_column(table, names)
    priorities = {c.name: c.priority for c in classes}
    return table.assign(slo_class=labels.astype(str), priority=[priorities[n] for n in labels])


def _by_rule(table: pd.DataFrame, classes: list[ClassConfig]) -> np.ndarray:
    """The first class whose `when` matches each request (a class without `when` matches all)."""
    prompt = table["prompt_tokens"].to_numpy()
    output = table["output_tokens"].to_numpy()
    labels = np.full(len(table), None, dtype=object)
    for spec in classes:
        rule = spec.when
        match = np.ones(len(table), dtype=bool)
        if rule is not None:
            for values, low, high in ((prompt, rule.min_prompt_tokens, rule.max_prompt_tokens),
                                      (output, rule.min_output_tokens, rule.max_output_tokens)):
                if low is not None:
                    match &= values >= low
                if high is not None:
                    match &= values <= high
        labels[match & (labels == None)] = spec.name  # noqa: E711 (elementwise)
    unmatched = np.flatnonzero(labels == None)  # noqa: E711
    if len(unmatched):
        row = int(unmatched[0])
        raise ConfigError(
            f"workload.classes: request {row} (prompt {prompt[row]}, output {output[row]} tokens) matches no class "
            f"rule ({len(unmatched)} requests do). Add a last class without `when` to catch the rest."
        )
    return labels


def _by_column(table: pd.DataFrame, names: np.ndarray) -> np.ndarray:
    if "slo_class" not in table:
        raise ConfigError(
            "workload.class_by: column needs a trace with an `slo_class` column; this workload has none. "
            "Use class_by: share or rule, or add the column to the trace."
        )
    labels = table["slo_class"].to_numpy(dtype=object)
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise ConfigError(
            f"workload.classes: the trace names class(es) {', '.join(map(str, unknown))} that are not defined; "
            f"defined: {', '.join(names)}. Add them to workload.classes."
        )
    return labels
