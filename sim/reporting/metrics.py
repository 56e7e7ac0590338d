"""Raw measurements collected while the simulation runs, kept cheap to append to.

Per-token gaps are pooled as (values, weight) chunks, so a decode stretch of K iterations for B
requests costs one array, not B x K floats. Everything is turned into tables at the end.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

REPLICA_SERIES_COLUMNS = (
    "time_s",
    "replica",
    "num_waiting",
    "num_running",
    "batch_size",
    "batch_tokens",
    "kv_used_blocks",
    "kv_total_blocks",
)
ITERATION_COLUMNS = ("replica", "start_s", "end_s", "batch_size", "num_tokens", "num_prefill_tokens", "num_decodes")


@dataclass
class MetricsRecorder:
    record_iterations: bool = False
    _gap_singles: list[float] = field(default_factory=list)
    _gap_chunks: list[tuple[np.ndarray, int]] = field(default_factory=list)
    _replica_rows: list[tuple] = field(default_factory=list)
    _system_rows: list[tuple[float, int]] = field(default_factory=list)
    _iteration_rows: list[tuple] = field(default_factory=list)
    _iteration_chunks: list[pd.DataFrame] = field(default_factory=list)

    def gap_sink(self) -> list[float]:
        """The list single inter-token gaps are appended to (the engine's hottest path)."""
        return self._gap_singles

    def add_gaps(self, seconds: np.ndarray, weight: int = 1) -> None:
        """`seconds` each observed `weight` times (a stretch's gaps, shared by its whole batch)."""
        if len(seconds):
            self._gap_chunks.append((seconds, weight))

    def sample_replica(self, row: tuple) -> None:
        """A row of REPLICA_SERIES_COLUMNS: the state of a replica from `time_s` on."""
        self._replica_rows.append(row)

    def sample_system(self, time_s: float, num_in_system: int) -> None:
        self._system_rows.append((time_s, num_in_system))

    def add_iteration(self, row: tuple) -> None:
        self._iteration_rows.append(row)

    def add_iteration_stretch(self, replica: int, starts: np.ndarray, ends: np.ndarray, batch_size: int) -> None:
        n = len(starts)
        self._iteration_chunks.append(
            pd.DataFrame(
                {
                    "replica": np.full(n, replica),
                    "start_s": starts,
                    "end_s": ends,
                    "batch_size": np.full(n, batch_size),
                    "num_tokens": np.full(n, batch_size),
                    "num_prefill_tokens": np.zeros(n, dtype=np.int64),
                    "num_decodes": np.full(n, batch_size),
                }
            )
        )

    def token_gaps(self) -> tuple[np.ndarray, np.ndarray]:
        """All inter-token gaps of the run as (values, weights)."""
        values = [np.asarray(self._gap_singles, dtype=float)] + [v for v, _ in self._gap_chunks]
        weights = [np.ones(len(self._gap_singles))] + [np.full(len(v), w, dtype=float) for v, w in self._gap_chunks]
        return np.concatenate(values), np.concatenate(weights)

    def replica_series(self) -> pd.DataFrame:
        return pd.DataFrame(self._replica_rows, columns=list(REPLICA_SERIES_COLUMNS))

    def system_series(self) -> pd.DataFrame:
        return pd.DataFrame(self._system_rows, columns=["time_s", "num_in_system"])

    def iterations(self) -> pd.DataFrame:
        frames = [pd.DataFrame(self._iteration_rows, columns=list(ITERATION_COLUMNS))] + self._iteration_chunks
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame(columns=list(ITERATION_COLUMNS))
        frame = pd.concat(frames, ignore_index=True)
        return frame.sort_values(["start_s", "replica"], kind="stable", ignore_index=True)
