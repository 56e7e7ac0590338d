"""Raw measurements collected while the simulation runs, kept cheap to append to and bounded.

Per-token gaps are pooled as (values, weight) chunks, so a decode stretch of K iterations for B
requests costs one array, not B x K floats; gaps and the time series spill to files as they grow
(`gap_store`, `spill`), and so do iteration records (opt-in, `iteration_records`), so memory
does not grow with the run.
"""
from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from servesim.sim.reporting.gap_store import GapStore
from servesim.sim.reporting.iteration_records import IterationRecorder
from servesim.sim.reporting.spill import ParquetSpill, read_table, typed_frame

if TYPE_CHECKING:
    from servesim.sim.reporting.token_records import TokenRecorder

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
        self.replica_rows = ParquetSpill(directory / "replica_series.parquet",
                                         typed_frame(REPLICA_SERIES_COLUMNS, SERIES_DTYPES))
        """Rows of REPLICA_SERIES_COLUMNS, each the state of a replica from its `time_s` on: the
        replicas append them (with `gaps.spill_if_full()` once an engine step, which bounds the step
        gaps they add), straight into the compiled spill."""
        self._system_rows = ParquetSpill(directory / "system_series.parquet",
                                         typed_frame(SYSTEM_SERIES_COLUMNS, SERIES_DTYPES))
        self._iterations = IterationRecorder(directory / "iterations.parquet") if record_iterations else None
        self.tokens: TokenRecorder | None = None
        """Every token's time (`output.per_token`): set by whoever runs the engine, read where tokens are emitted."""
        self._finished = False

    def sample_system(self, time_s: float, num_in_system: int) -> None:
        self._system_rows.append((time_s, num_in_system))

    def finish(self) -> None:
        """The run is over: every buffered row and gap to its file (idempotent)."""
        if not self._finished:
            self.gaps.finish()
            self.replica_rows.close()
            self._system_rows.close()
            self._finished = True

    @property
    def replica_series_path(self) -> Path:
        self.finish()
        return self.replica_rows.path

    @property
    def system_series_path(self) -> Path:
        self.finish()
        return self._system_rows.path

    def add_iteration(self, row: tuple) -> None:
        """A row of ITERATION_COLUMNS (only when recording iterations)."""
        assert self._iterations is not None
        self._iterations.add(row)

    def add_iteration_stretch(self, replica: int, starts: np.ndarray, ends: np.ndarray, batch_size: int) -> None:
        assert self._iterations is not None
        self._iterations.add_stretch(replica, starts, ends, batch_size)

    @property
    def iterations_path(self) -> Path | None:
        """`iterations.parquet`, sorted and complete (None unless recording iterations)."""
        self.finish()
        return self._iterations.close() if self._iterations is not None else None

    def token_gaps(self) -> tuple[np.ndarray, np.ndarray]:
        """All inter-token gaps of the run as (values, weights), read back into memory."""
        self.finish()
        return self.gaps.arrays()

    def replica_series(self) -> pd.DataFrame:
        return read_table(self.replica_series_path)

    def system_series(self) -> pd.DataFrame:
        return read_table(self.system_series_path)

    def iterations(self) -> pd.DataFrame:
        """Every iteration of the run, in (start_s, replica) order."""
        path = self.iterations_path
        assert path is not None, "iterations are recorded only with record_iterations"
        return read_table(path)
