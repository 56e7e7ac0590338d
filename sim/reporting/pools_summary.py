"""A pooled run's results: per-pool counts, and a disaggregated run's transfers and decode queues.

`transfers.parquet` has one row per request that moved from a prefill to a decode replica;
`decode_queue.parquet` is each decode replica's queue of requests waiting for KV blocks over
time (the back-pressure). Both are written as the run goes (`DisaggregationRecords`); the
summary's `pools` and `disaggregation` blocks are computed from the files.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from servesim.sim.engine.disaggregation import BACKPRESSURE_COLUMNS, TRANSFER_COLUMNS, Disaggregation
from servesim.sim.engine.replica import Replica
from servesim.sim.experiment.pools import describe
from servesim.sim.reporting.spill import ParquetSpill, read_table, typed_frame
from servesim.sim.reporting.summary import latency_block

if TYPE_CHECKING:
    from servesim.sim.runner import PreparedPool

_TEXT = ("prefill_pool", "decode_pool")
_INTS = ("request_id", "prefill_replica", "decode_replica", "kv_bytes", "replica", "num_waiting_for_blocks")
DTYPES = {name: "str" if name in _TEXT else "int64" if name in _INTS else "bool" if name == "layerwise"
          else "float64" for name in TRANSFER_COLUMNS + BACKPRESSURE_COLUMNS}


class DisaggregationRecords:
    """A disaggregated run's transfers and decode-queue rows, written to Parquet row groups as they
    come (both grow with the requests; see README, "Bounded memory")."""

    def __init__(self, directory: Path) -> None:
        self.transfers = ParquetSpill(directory / "transfers.parquet", typed_frame(TRANSFER_COLUMNS, DTYPES))
        self.decode_queue = ParquetSpill(directory / "decode_queue.parquet", typed_frame(BACKPRESSURE_COLUMNS, DTYPES))

    def close(self) -> dict[str, Path]:
        """Write what is buffered; both files by table name."""
        return {"transfers": self.transfers.close(), "decode_queue": self.decode_queue.close()}


def pools_summary(pools: Sequence[PreparedPool], replicas: Sequence[Replica], requests: pd.DataFrame,
                  tables: Mapping[str, Path], now: float) -> dict[str, Any]:
    """Per pool: its role, size, hardware and plan; requests it served, iterations and busy share."""
    prefilled = pd.Series([], dtype="int64")
    if "transfers" in tables:
        prefilled = read_table(tables["transfers"])["prefill_replica"]
    summary = {}
    for pool in pools:
        members = [r for r in replicas if r.placement.pool == pool.spec.name]
        ids = [r.replica_id for r in members]
        served = int(requests["replica"].isin(ids).sum()) + int(prefilled.isin(ids).sum())
        busy = [r.busy_s() / now for r in members] if now > 0 else [0.0]
        summary[pool.spec.name] = {
            **describe(pool.spec),
            "kv_blocks_per_replica": pool.capacity.num_blocks,
            "requests": served,
            "iterations": sum(r.num_iterations for r in members),
            "busy_share": float(np.mean(busy)),
        }
    return summary


def disaggregation_summary(transfer: str, requests: pd.DataFrame, tables: Mapping[str, Path],
                           disaggregation: Disaggregation) -> dict[str, Any]:
    """How long KV moves took, what they added to TTFT, how long requests waited for decode blocks,
    and the layerwise transfers aborted by a preemption on the prefill side."""
    transfers = read_table(tables["transfers"])
    queue = read_table(tables["decode_queue"])
    ttft = transfers["request_id"].map(requests.set_index("request_id")["ttft_s"])
    handoff = transfers["transfer_end_s"] - transfers["prefill_end_s"]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (handoff / ttft).to_numpy(dtype=float)
    return {
        "transfer": transfer,
        "num_transfers": len(transfers),
        "kv_bytes": int(transfers["kv_bytes"].sum()),
        "transfer_s": latency_block((transfers["transfer_end_s"] - transfers["transfer_start_s"]).to_numpy()),
        "handoff_s": latency_block(handoff.to_numpy()),
        "ttft_share": float(np.nanmean(share)) if np.isfinite(share).any() else None,
        "decode_wait_s": latency_block((transfers["reserved_s"] - transfers["queued_s"]).to_numpy()),
        "max_waiting_for_blocks": int(queue["num_waiting_for_blocks"].max()) if len(queue) else 0,
        "aborted_transfers": disaggregation.num_aborted,
        "aborted_kv_bytes": disaggregation.aborted_bytes,
    }
