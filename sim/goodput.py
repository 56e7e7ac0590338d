"""Max goodput: the highest load at which SLO attainment stays at or above its target.

The load is scaled with `workload.rate_scale` (which divides every arrival time, for traces and
synthetic arrivals alike) and searched by bisection between a scale that meets the target and
one that misses it, as DistServe defines and measures it (Zhong et al., OSDI 2024).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from servesim.sim.errors import ConfigError, EngineInvariantError
from servesim.sim.experiment.config import ExperimentConfig, ObjectivesConfig, SloConfig
from servesim.sim.experiment.loading import validate_config
from servesim.sim.experiment.sweep_points import SweepPoint, point_label
from servesim.sim.reporting.progress import QUIET, ProgressOptions
from servesim.sim.sweeps.points import PointTask, run_point
from servesim.sim.sweeps.table import PointRow, sweep_table

RATE_SCALE = "workload.rate_scale"


@dataclass
class GoodputSearch:
    """The probes of one search, and the best load found."""

    target: float
    probes: list[tuple[float, float, float]] = field(default_factory=list)
    """(rate scale, offered requests/s, attainment) of every run, in order."""
    rows: list[PointRow] = field(default_factory=list)
    """Every probe as a sweep point (`probe00`, ...) with its whole summary, in order."""

    def table(self) -> pd.DataFrame:
        """The probes as a sweep's table: one row per probe, swept key `workload.rate_scale` (the scale
        relative to the config's own rate), the summary flattened."""
        return sweep_table(self.rows, [RATE_SCALE])

    @property
    def best(self) -> tuple[float, float, float] | None:
        """The highest-load probe that met the target (None if none did)."""
        met = [p for p in self.probes if p[2] >= self.target]
        return max(met) if met else None


def has_slo(config: ExperimentConfig) -> bool:
    """True if some objective is set (globally or for a class); without one every request meets it."""
    objectives: list[SloConfig | ObjectivesConfig] = [config.slo, *(c.slo for c in config.workload.classes)]
    return any(o.ttft_s is not None or o.tpot_s is not None or o.e2e_s is not None for o in objectives)


def check_search(config: ExperimentConfig, low: float, high: float, tolerance: float) -> None:
    """Refuse a search that is meaningless or would never end, before any run."""
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
        raise ConfigError(
            f"goodput search: need 0 < low < high, both finite (--low, --high), got low={low}, high={high}"
        )
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise ConfigError(
            f"goodput search: tolerance (--tolerance) must be a finite number > 0 "
            f"(the relative width at which bisection stops), got {tolerance}; e.g. --tolerance 0.02"
        )
    if not has_slo(config):
        raise ConfigError(
            f"goodput search: config {config.name!r} sets no SLO (slo.ttft_s, slo.tpot_s, slo.e2e_s or a class's "
            "slo), so every request meets it at any load and max goodput is undefined; set at least one objective, "
            "e.g. --set slo.ttft_s=1.0"
        )


def max_goodput(
    config: ExperimentConfig,
    base_dir: Path = Path("."),
    low: float = 0.25,
    high: float = 4.0,
    tolerance: float = 0.02,
    on_probe: Callable[[float, float, float], None] | None = None,
    progress: ProgressOptions = QUIET,
    label: str = "",
) -> GoodputSearch:
    """Bisect the rate scale (relative to the config's own) between `low` and `high`.

    Each probe's simulation shows its progress as `progress` says, labelled `label` and its scale.

    Stops when the bracket is narrower than `tolerance` (relative). If `low` already misses
    the target or `high` still meets it, the search reports that bracket end and stops.
    """
    check_search(config, low, high, tolerance)
    search = GoodputSearch(config.slo.attainment_target)
    base_scale = config.workload.rate_scale

    def probe(scale: float) -> bool:
        data = config.model_dump(mode="json", exclude={"variants", "claim", "claims"}, exclude_none=True)
        data["workload"]["rate_scale"] = base_scale * scale
        point = SweepPoint(f"probe{len(search.probes):02d}", point_label({RATE_SCALE: scale}), {RATE_SCALE: scale},
                           validate_config(data))
        outcome = run_point(PointTask(point.name, point.config, str(base_dir), files=False), progress,
                            f"{label} scale {scale:.3f}".lstrip())
        if outcome.error is not None or outcome.summary is None:
            failure = ConfigError if outcome.user_error else EngineInvariantError
            raise failure(f"goodput probe at rate scale {scale:.4g}: {outcome.error}")
        offered = outcome.offered_requests_per_s
        attainment = outcome.summary["slo"]["attainment"]
        search.probes.append((scale, offered, attainment))
        search.rows.append(PointRow(point, None, outcome.summary, offered))
        if on_probe is not None:
            on_probe(scale, offered, attainment)
        return attainment >= search.target

    if not probe(low) or probe(high):
        return search
    while high / low > 1 + tolerance:
        middle = (low * high) ** 0.5
        if probe(middle):
            low = middle
        else:
            high = middle
    return search
