"""One candidate's goodput search: the unit of work of `simrun plan`, run on any sweep backend.

`search_candidate` is a top-level function of plain, picklable data, like the sweep's `run_point`,
so that a spawned process or a Ray worker can run it. It never raises for a candidate that fails:
the error comes back as text and the other candidates go on.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from servesim.sim.experiment.config import ExperimentConfig
from servesim.sim.goodput import max_goodput
from servesim.sim.reporting.results import config_yaml
from servesim.sim.sweeps.points import describe_error


class Bound(str, Enum):
    """What a candidate's max goodput is: found inside the bracket, or one of its ends."""

    EXACT = "exact"
    AT_LEAST = "at_least"  # the highest rate tried still met the target
    BELOW = "below"  # the lowest rate tried already missed it: reported as 0


@dataclass(frozen=True)
class RateBracket:
    """The arrival rates (requests/s) searched for one candidate, and when to stop."""

    low_rate: float
    high_rate: float
    tolerance: float


@dataclass(frozen=True)
class CandidateTask:
    """One candidate to search: its validated config, where relative paths start, and the bracket.

    `base_rate` is the config's own offered rate (requests/s): rates become `workload.rate_scale`
    factors relative to it, so a trace is searched as faithfully as a synthetic arrival process.
    """

    name: str
    config: ExperimentConfig
    base_dir: str
    bracket: RateBracket
    base_rate: float


@dataclass
class CandidateOutcome:
    """A candidate's search: its probes (rate scale, offered req/s, attainment), or the error that stopped it."""

    name: str
    error: str | None = None
    probes: list[tuple[float, float, float]] = field(default_factory=list)


def fingerprint(config: ExperimentConfig, bracket: RateBracket, target: float) -> str:
    """What decides a candidate's result: its config and its search; an earlier result with it is reused."""
    searched = json.dumps([bracket.low_rate, bracket.high_rate, bracket.tolerance, target])
    return hashlib.sha256((config_yaml(config) + searched).encode()).hexdigest()


def search_candidate(task: CandidateTask) -> CandidateOutcome:
    """Bisect the candidate's max goodput inside its bracket (see `sim.goodput.max_goodput`)."""
    bracket = task.bracket
    try:
        search = max_goodput(task.config, Path(task.base_dir), bracket.low_rate / task.base_rate,
                             bracket.high_rate / task.base_rate, bracket.tolerance)
    except Exception as exc:  # a failing candidate is recorded with its error; the others go on
        return CandidateOutcome(task.name, error=describe_error(exc))
    return CandidateOutcome(task.name, probes=search.probes)


def best_probe(probes: list[tuple[float, float, float]], target: float) -> tuple[float, Bound]:
    """The max goodput (requests/s) the probes found, and whether it is exact or a bracket end."""
    met = [offered for _, offered, attainment in probes if attainment >= target]
    if not met:
        return 0.0, Bound.BELOW
    highest_tried = max(offered for _, offered, _ in probes)
    best = max(met)
    return best, Bound.AT_LEAST if math.isclose(best, highest_tried) else Bound.EXACT
