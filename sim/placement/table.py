"""The plan's tables: one row per candidate (`plan.parquet`), one per probe (`probes.parquet`), and the best.

`plan.parquet` columns: `candidate`, `label`, `mode`, `gpus`, the pools' shapes (`tp`, `pp`,
`replicas` of a unified candidate; `prefill_*` and `decode_*` of a disaggregated one, empty where
they do not apply), `status` (`ok`, `skipped`: it cannot run, e.g. the model does not fit;
`failed`: a probe failed while running), `error`, `max_goodput_requests_per_s`, `goodput_per_gpu`,
`bound` (`exact`, `at_least`: the highest rate tried still met the target, `below`: the lowest
already missed it, reported as 0), `num_probes`, `best`, `fingerprint` (what resuming matches).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from servesim.sim.placement.candidates import Candidate
from servesim.sim.placement.search import best_probe

SHAPE_COLUMNS = tuple(f"{prefix}{key}" for prefix in ("", "prefill_", "decode_") for key in ("tp", "pp", "replicas"))
PROBE_COLUMNS = ("candidate", "probe", "rate_scale", "offered_requests_per_s", "attainment")


@dataclass
class CandidateResult:
    """What the search learnt of one candidate: `ok` with its probes, `skipped` or `failed` with why."""

    candidate: Candidate
    status: str
    fingerprint: str = ""
    error: str | None = None
    probes: list[tuple[float, float, float]] = field(default_factory=list)


def plan_table(results: Iterable[CandidateResult], target: float) -> pd.DataFrame:
    """One row per candidate in candidate order, the best (highest goodput per GPU, first on ties) marked."""
    records = [_record(result, target) for result in sorted(results, key=lambda r: r.candidate.name)]
    table = pd.DataFrame.from_records(records, columns=list(_record_columns()))
    for column in ("gpus", *SHAPE_COLUMNS, "num_probes"):
        table[column] = table[column].astype("Int64")
    for column in ("candidate", "label", "mode", "status", "error", "bound", "fingerprint"):
        table[column] = table[column].astype("string")
    table["best"] = False
    best = best_index(table)
    if best is not None:
        table.loc[best, "best"] = True
    return table


def best_index(table: pd.DataFrame) -> Any:
    """The row of the highest goodput per GPU among candidates that ran (the first of equals); None if none did."""
    ran = table[(table["status"] == "ok") & (table["max_goodput_requests_per_s"] > 0)]
    if ran.empty:
        return None
    return ran["goodput_per_gpu"].idxmax()


def probes_table(results: Iterable[CandidateResult]) -> pd.DataFrame:
    """Every probe of every candidate that ran, in candidate then probe order."""
    rows = [(result.candidate.name, index, *probe)
            for result in sorted(results, key=lambda r: r.candidate.name)
            for index, probe in enumerate(result.probes)]
    table = pd.DataFrame.from_records(rows, columns=list(PROBE_COLUMNS))
    table["candidate"] = table["candidate"].astype("string")
    table["probe"] = table["probe"].astype("int64")
    return table


def _record_columns() -> Sequence[str]:
    return ("candidate", "label", "mode", "gpus", *SHAPE_COLUMNS, "status", "error", "max_goodput_requests_per_s",
            "goodput_per_gpu", "bound", "num_probes", "fingerprint")


def _record(result: CandidateResult, target: float) -> dict[str, Any]:
    candidate = result.candidate
    record: dict[str, Any] = {"candidate": candidate.name, "label": candidate.label, "mode": candidate.mode,
                              "gpus": candidate.gpus, "status": result.status, "error": result.error,
                              "fingerprint": result.fingerprint, "num_probes": len(result.probes)}
    for pool in candidate.pools:
        prefix = "" if pool.role == "unified" else f"{pool.role}_"
        record.update({f"{prefix}tp": pool.tp, f"{prefix}pp": pool.pp, f"{prefix}replicas": pool.replicas})
    if result.status == "ok":
        goodput, bound = best_probe(result.probes, target)
        record.update(max_goodput_requests_per_s=goodput, goodput_per_gpu=goodput / candidate.gpus,
                      bound=bound.value)
    return record


def format_table(table: pd.DataFrame) -> str:
    """The table as printed: best goodput per GPU first, then candidates that could not run; `*` marks the best."""
    ran = table[table["status"] == "ok"].sort_values("goodput_per_gpu", ascending=False, kind="stable")
    rest = table[table["status"] != "ok"]
    width = max([len("candidate shape"), *(len(label) for label in table["label"])])
    name_width = max(len(name) for name in table["candidate"])
    header = f"{'candidate shape':<{width}}  {'GPUs':>4}  {'goodput req/s':>13}  {'per GPU':>9}  note"
    lines = [f"  {'':<{name_width}}  {header}"]
    for _, row in pd.concat([ran, rest]).iterrows():
        mark = "*" if row["best"] else " "
        head = f"{mark} {row['candidate']:<{name_width}}  {row['label']:<{width}}  {row['gpus']:>4}"
        if row["status"] == "ok":
            note = {"exact": "", "at_least": "at least (raise plan.max_rate)",
                    "below": "misses the target at plan.min_rate"}[row["bound"]]
            lines.append(f"{head}  {row['max_goodput_requests_per_s']:>13.3f}  {row['goodput_per_gpu']:>9.3f}  {note}")
        else:
            reason = " ".join(str(row["error"]).split())
            lines.append(f"{head}  {'-':>13}  {'-':>9}  {row['status']}: {_abridged(reason)}")
    return "\n".join(line.rstrip() for line in lines)


def _abridged(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
