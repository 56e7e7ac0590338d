"""Raw measurements collected while the simulation runs, kept cheap to append to and bounded.

Per-token gaps are pooled as (values, weight) chunks, so a decode stretch of K iterations for B
requests costs one array, not B x K floats; gaps and the time series spill to files as they grow
(`gap_store`, `spill`), so memory does not grow with the run. Iteration records (opt-in) stay
in memory.
"""
from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np
import pandas as pd

from servesim.sim.reporting.gap_store import GapStore
from servesim.sim.reporting.spill import ParquetSpill, read_table, typed_frame

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


SYSTEM_SERIES_COLUMNS = ("time_s", "num_in_system")
SERIES_DTYPES = {"time_s": "float64", **{name: "int64" for name in REPLICA_SERIES_COLUMNS[1:] + ("num_in_system",)}}


class MetricsRecorder:
    """Gaps and time series go to files in `directory` as they grow (see `gap_store`, `spill`).

    Without a directory the recorder makes a temporary one, removed when the recorder is.
    """

    def __init__(self, record_iterations: bool = False, directory: Path | None = None) -> None:
        self.record_iterations = record_iterations
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="servesim-"))
            # removed with the recorder, quietly (a TemporaryDirectory warns when collected)
            weakref.finalize(self, shutil.rmtree, directory, ignore_errors=True)
        self.directory = directory
        self.gaps = GapStore(directory)
        self._replica_rows = ParquetSpill(directory / "replica_series.parquet",
                                          typed_frame(REPLICA_SERIES_COLUMNS, SERIES_DTYPES))
        self._system_rows = ParquetSpill(directory / "system_series.parquet",
                                         typed_frame(SYSTEM_SERIES_COLUMNS, SERIES_DTYPES))
        self._iteration_rows: list[tuple] = []
        self._iteration_chunks: list[pd.DataFrame] = []
        self._finished = False

    def gap_sink(self) -> list[float]:
        """The list single inter-token gaps are appended to (the engine's hottest path)."""
        return self.gaps.singles

    def add_gaps(self, seconds: np.ndarray, weight: int = 1) -> None:
        """`seconds` each observed `weight` times (a stretch's gaps, shared by its whole batch)."""
        if len(seconds):
            self.gaps.add(seconds, weight)

    def sample_replica(self, row: tuple) -> None:
        """A row of REPLICA_SERIES_COLUMNS: the state of a replica from `time_s` on."""
        self._replica_rows.append(row)
        self.gaps.spill_if_full()  # once per engine step: bounds the singles the replicas append

    def sample_system(self, time_s: float, num_in_system: int) -> None:
        self._system_rows.append((time_s, num_in_system))

    def finish(self) -> None:
        """The run is over: every buffered row and gap to its file (idempotent)."""
        if not self._finished:
            self.gaps.finish()
            self._replica_rows.close()
            self._system_rows.close()
            self._finished = True

    @property
    def replica_series_path(self) -> Path:
        self.finish()
        return self._replica_rows.path

    @property
    def system_series_path(self) -> Path:
        self.finish()
        return self._system_rows.path

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
        """All inter-token gaps of the run as (values, weights), read back into memory."""
        self.finish()
        return self.gaps.arrays()

    def replica_series(self) -> pd.DataFrame:
        return read_table(self.replica_series_path)

    def system_series(self) -> pd.DataFrame:
        return read_table(self.system_series_path)

    def iterations(self) -> pd.DataFrame:
        frames = [pd.DataFrame(self._iteration_rows, columns=list(ITERATION_COLUMNS))] + self._iteration_chunks
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame(columns=list(ITERATION_COLUMNS))
        frame = pd.concat(frames, ignore_index=True)
        return frame.sort_values(["start_s", "replica"], kind="stable", ignore_index=True)
