"""Running a placement search: check every candidate, search the max goodput of those that can run, pick the best.

Everything knowable in advance is checked before the first simulation: the `plan:` block, the
SLOs, the results directory, and each candidate (config, plan rules, memory); a candidate that
cannot run is `skipped` with the reason, and the search refuses only when none can. The others
are searched on the sweep's backends (local processes or Ray), each by bisection over its arrival
rate (`sim.goodput`). The results directory is written through the same safe path as `simrun run`;
an interrupted search writes the candidates that finished, and rerunning it into the same
directory reuses every earlier candidate whose config and search are unchanged.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from servesim.sim.errors import ConfigError
from servesim.sim.experiment.config import ExperimentConfig, PlanConfig
from servesim.sim.experiment.loading import validate_config
from servesim.sim.goodput import check_search
from servesim.sim.placement.candidates import PLAN_KEYS, Candidate, candidates
from servesim.sim.placement.search import CandidateOutcome, CandidateTask, RateBracket, fingerprint, search_candidate
from servesim.sim.placement.table import CandidateResult, plan_table, probes_table
from servesim.sim.reporting.json_output import finite_or_none, json_text
from servesim.sim.reporting.output_dir import claim_output
from servesim.sim.reporting.output_target import MARKER, OutputTarget, TargetState, resolve_target
from servesim.sim.reporting.results import config_yaml
from servesim.sim.sweeps.backends import Backend, check_options, run_work
from servesim.sim.sweeps.points import offered_rate

PLAN_KIND = "plan"
TABLE_FILE = "plan.parquet"
PROBES_FILE = "probes.parquet"
BEST_FILE = "plan.json"
DEFAULT_HIGH_PER_GPU = 4.0  # x the workload's rate, per GPU of the budget (as `simrun goodput --high` per replica)
DEFAULT_LOW_DIVISOR = 256.0
Finished = Callable[[str, str, str | None], None]


@dataclass
class PlanReport:
    """A search's outcome: where it was written, its tables, the best plan, and how many were reused."""

    output: str
    table: pd.DataFrame
    probes: pd.DataFrame
    best: dict[str, Any] | None
    num_resumed: int
    complete: bool = True


@dataclass(frozen=True)
class Searchable:
    """A candidate that can run: its search task and the fingerprint an earlier result must match."""

    candidate: Candidate
    task: CandidateTask
    fingerprint: str


@dataclass(frozen=True)
class Checked:
    """The candidates after the checks: those to search (by name), those skipped, and the rates searched."""

    tasks: dict[str, Searchable]
    skipped: list[CandidateResult]
    min_rate: float
    max_rate: float


def run_plan(
    config: ExperimentConfig,
    base_dir: Path,
    output: str | os.PathLike[str],
    *,
    jobs: int | None = None,
    backend: Backend = "local",
    address: str | None = None,
    on_begin: Callable[[int, int], None] | None = None,
    on_finished: Finished | None = None,
) -> PlanReport:
    """Search `config.plan` into `output`; see the module docstring. `on_begin(num_to_search, num_resumed)`
    and `on_finished(candidate, label, error)` report progress."""
    check_options(backend, jobs, address)
    target = resolve_target(output)
    checked = check_plan(config, base_dir)
    earlier = _earlier_results(target)
    results = {r.candidate.name: r for r in checked.skipped}
    for name, searchable in checked.tasks.items():
        if searchable.fingerprint in earlier:
            results[name] = CandidateResult(searchable.candidate, "ok", searchable.fingerprint,
                                            probes=earlier[searchable.fingerprint])
    pending = [searchable.task for name, searchable in checked.tasks.items() if name not in results]
    num_resumed = len(checked.tasks) - len(pending)
    interrupted: KeyboardInterrupt | None = None
    with claim_output(target) as claim:
        if on_begin is not None:
            on_begin(len(checked.tasks), num_resumed)
        outcomes = run_work(pending, search_candidate, _crashed, backend, jobs, address)
        try:
            for outcome in outcomes:
                candidate, digest = checked.tasks[outcome.name].candidate, checked.tasks[outcome.name].fingerprint
                status = "ok" if outcome.error is None else "failed"
                results[outcome.name] = CandidateResult(candidate, status, digest, outcome.error, outcome.probes)
                if on_finished is not None:
                    on_finished(candidate.name, candidate.label, outcome.error)
        except KeyboardInterrupt as exc:
            interrupted = exc
        finally:
            outcomes.close()
        report = _report(config, list(results.values()), target, num_resumed, interrupted is None)
        with claim.staging(PLAN_KIND, config_yaml(config)) as staging:
            _write(staging, config, report)
    if interrupted is not None:
        interrupted.results_in_place = target.shown  # type: ignore[attr-defined]
        raise interrupted
    return report


def check_plan(config: ExperimentConfig, base_dir: Path) -> Checked:
    """Check the plan and prepare every candidate; ConfigError if the search cannot run at all."""
    from servesim.sim.runner import prepare

    plan = _plan_of(config)
    found = candidates(config)
    prepared: dict[str, tuple[Candidate, ExperimentConfig, float]] = {}
    skipped = []
    for candidate in found:
        try:
            candidate_config = validate_config(candidate.data, origin=f"plan candidate {candidate.name}")
            run = prepare(candidate_config, base_dir)
        except ConfigError as exc:
            skipped.append(CandidateResult(candidate, "skipped", error=str(exc)))
            continue
        prepared[candidate.name] = (candidate, candidate_config,
                                    offered_rate(len(run.workload), run.workload.last_arrival_s))
    if not prepared:
        reasons = list(dict.fromkeys(r.error or "" for r in skipped))
        raise ConfigError(f"plan: none of the {len(found)} candidates can run; nothing was run. Reasons:\n"
                          + "\n".join(f"- {reason}" for reason in reasons[:5]))
    base_rate = next(iter(prepared.values()))[2]
    if not (math.isfinite(base_rate) and base_rate > 0):
        raise ConfigError("plan: the workload's requests all arrive at once (an offline batch), so there is no "
                          "arrival rate to search; give the workload an arrival process or a trace with arrival times")
    max_rate = plan.max_rate if plan.max_rate is not None else DEFAULT_HIGH_PER_GPU * base_rate * plan.gpus
    min_rate = plan.min_rate if plan.min_rate is not None else max_rate / DEFAULT_LOW_DIVISOR
    if min_rate >= max_rate:
        raise ConfigError(f"plan.min_rate: {min_rate:g} requests/s is not below the highest rate searched, "
                          f"{max_rate:g} (plan.max_rate, default 4 x the workload's {base_rate:g} x plan.gpus); "
                          "lower plan.min_rate or raise plan.max_rate")
    check_search(next(iter(prepared.values()))[1], min_rate, max_rate, plan.tolerance)
    tasks = {}
    for name, (candidate, candidate_config, _) in prepared.items():
        share = candidate.gpus / plan.gpus
        bracket = RateBracket(min_rate * share, max_rate * share, plan.tolerance)
        digest = fingerprint(candidate_config, bracket, config.slo.attainment_target)
        tasks[name] = Searchable(candidate, CandidateTask(name, candidate_config, str(base_dir), bracket, base_rate),
                                 digest)
    return Checked(tasks, skipped, min_rate, max_rate)


def _plan_of(config: ExperimentConfig) -> PlanConfig:
    if config.plan is None:
        raise ConfigError(f"config {config.name!r} has no `plan:` block; add one such as `plan: {{gpus: 8}}` "
                          "(see the README's Placement search section)")
    mixed = [key for key in PLAN_KEYS[1:] if getattr(config, key)]
    if mixed:
        raise ConfigError(f"plan: config {config.name!r} also has {', '.join(mixed)}; a placement search reshapes one "
                          "base config, so remove them (or search each variant's config separately)")
    if config.workload.clients is not None:
        raise ConfigError("plan: workload.clients is a closed loop, whose load is set by its clients, not an arrival "
                          "rate that the search could raise; give an arrival process or a trace")
    return config.plan


def _crashed(name: str, error: str) -> CandidateOutcome:
    return CandidateOutcome(name, error=error)


def _report(config: ExperimentConfig, results: list[CandidateResult], target: OutputTarget, num_resumed: int,
            complete: bool) -> PlanReport:
    """The tables of `results` and the best candidate, described with the cluster section to paste into a config."""
    table = plan_table(results, config.slo.attainment_target)
    best = None
    chosen = table[table["best"]]
    if not chosen.empty:
        row = chosen.iloc[0]
        candidate = next(r.candidate for r in results if r.candidate.name == row["candidate"])
        best = {"candidate": candidate.name, "label": candidate.label, "mode": candidate.mode, "gpus": candidate.gpus,
                "max_goodput_requests_per_s": float(row["max_goodput_requests_per_s"]),
                "goodput_per_gpu": float(row["goodput_per_gpu"]), "bound": str(row["bound"]),
                "cluster": candidate.data["cluster"]}
    return PlanReport(target.shown, table, probes_table(results), best, num_resumed, complete)


def _write(staging: Path, config: ExperimentConfig, report: PlanReport) -> None:
    assert config.plan is not None  # checked by check_plan
    counts = report.table["status"].value_counts()
    summary = {
        "complete": report.complete,
        "best": report.best,
        "slo": config.slo.model_dump(mode="json", exclude_none=True),
        "plan": config.plan.model_dump(mode="json", exclude_none=True),
        "num_candidates": len(report.table),
        **{f"num_{status}": int(counts.get(status, 0)) for status in ("ok", "skipped", "failed")},
    }
    (staging / "config.yaml").write_text(config_yaml(config))
    (staging / BEST_FILE).write_text(json_text(finite_or_none(summary)))
    report.table.to_parquet(staging / TABLE_FILE, index=False)
    report.probes.to_parquet(staging / PROBES_FILE, index=False)


def _earlier_results(target: OutputTarget) -> dict[str, list[tuple[float, float, float]]]:
    """The probes of every candidate an earlier search into `target` finished, by fingerprint."""
    if target.state is not TargetState.RESULTS:
        return {}
    try:
        marker = json.loads((target.path / MARKER).read_text())
        if marker.get("kind") != PLAN_KIND:
            return {}
        table = pd.read_parquet(target.path / TABLE_FILE, columns=["candidate", "status", "fingerprint"])
        probes = pd.read_parquet(target.path / PROBES_FILE)
    except (OSError, ValueError, KeyError, AttributeError):
        return {}
    ran = table[table["status"] == "ok"]
    by_candidate: dict[str, list[tuple[float, float, float]]] = {}
    columns = ("candidate", "rate_scale", "offered_requests_per_s", "attainment")
    for candidate, scale, offered, attainment in zip(*(probes[c].tolist() for c in columns), strict=True):
        by_candidate.setdefault(str(candidate), []).append((float(scale), float(offered), float(attainment)))
    return {str(row.fingerprint): by_candidate.get(str(row.candidate), []) for row in ran.itertuples(index=False)}
