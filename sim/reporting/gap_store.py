"""Every inter-token gap of a run, pooled, kept on disk once there are many.

A run has one gap per generated token. A step's batch mostly shares one gap (each request's
last token came at the end of the step before), so a step adds (gap, count) entries, one per
run of equal gaps (`add_step`), and a fast-forwarded decode
stretch adds one array (its inner gaps, shared by its whole batch, so weighted). Both go to flat
float64 files once SPILL_ENTRIES of them are buffered, so memory stays bounded however long the
run; the summary's statistics read them back in blocks (`streamed_stats`) and are exact. The
pooled order is every step entry, then every stretch entry, in the order they came.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

SPILL_ENTRIES = 1 << 16
"""Gaps of a kind buffered in memory before they are appended to their file (2 MiB as Python floats)."""
SPILL_CHUNKS = 4096
"""Stretch arrays buffered before they are appended, however short they are."""
_ITEM_BYTES = 8
_FILES = ("gaps_step_values.f64", "gaps_step_weights.f64", "gaps_stretch_values.f64", "gaps_stretch_weights.f64")
"""The files of a store's folder: step entries' values and counts, stretch entries' values and weights."""


class GapStore:
    """Pooled (gap seconds, times observed) entries: a `streamed_stats.Sample`."""

    def __init__(self, directory: Path) -> None:
        self._step_values: list[float] = []
        self._step_counts: list[int] = []
        self._chunk_values: list[np.ndarray] = []
        self._chunk_weights: list[int] = []
        self._num_buffered_chunk = 0
        self._paths = tuple(directory / name for name in _FILES)
        for path in self._paths:
            path.write_bytes(b"")
        self._num_steps_on_disk = 0
        self._num_chunk_on_disk = 0
        self._last_read: tuple[int, int, np.ndarray, np.ndarray] | None = None
        """The block read last, kept until the files grow: the summary reads each block several times."""

    def add_step(self, gaps: list[float]) -> None:
        """One step's gaps, a request's each: stored as runs of equal values (mostly one run)."""
        values, counts = self._step_values, self._step_counts
        if gaps and gaps.count(gaps[0]) == len(gaps):  # the usual step: one run, counted in C
            values.append(gaps[0])
            counts.append(len(gaps))
            return
        last = None
        for gap in gaps:
            if gap == last:
                counts[-1] += 1
            else:
                values.append(gap)
                counts.append(1)
                last = gap

    def add_equal_steps(self, gaps: list[float], count: int) -> None:
        """Steps whose `count` requests each saw the same gap, one step's gap after another: what
        `add_step` stores for each of them."""
        self._step_values.extend(gaps)
        self._step_counts.extend([count] * len(gaps))

    def add(self, seconds: np.ndarray, weight: int) -> None:
        self._chunk_values.append(np.asarray(seconds, dtype=np.float64))
        self._chunk_weights.append(weight)
        self._num_buffered_chunk += len(seconds)
        self.spill_if_full()

    def spill_if_full(self) -> None:
        """Append buffered gaps to the files once SPILL_ENTRIES of a kind are waiting."""
        if len(self._step_values) >= SPILL_ENTRIES:
            self._spill_steps()
        if self._num_buffered_chunk >= SPILL_ENTRIES or len(self._chunk_values) >= SPILL_CHUNKS:
            self._spill_chunks()

    def finish(self) -> None:
        """Everything to disk: reading back then sees every gap."""
        self._spill_steps()
        self._spill_chunks()

    def extend_from(self, directory: Path) -> None:
        """Append the gaps a finished store wrote to `directory` (a worker process's, in a parallel
        run): its step entries after this store's, its stretch entries after this store's."""
        self.finish()
        for mine, name in zip(self._paths, _FILES, strict=True):
            with mine.open("ab") as out, (directory / name).open("rb") as theirs:
                shutil.copyfileobj(theirs, out)
        self._last_read = None
        steps, _, values, _ = (directory / name for name in _FILES)
        self._num_steps_on_disk += steps.stat().st_size // _ITEM_BYTES
        self._num_chunk_on_disk += values.stat().st_size // _ITEM_BYTES

    @property
    def num_entries(self) -> int:
        return self._num_steps_on_disk + self._num_chunk_on_disk

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Values and weights of pooled entries [start, stop) (after `finish`), read-only."""
        last = self._last_read
        if last is not None and last[0] == start and last[1] == stop:
            return last[2], last[3]
        values, weights = self._read_files(start, stop)
        values.flags.writeable = weights.flags.writeable = False
        self._last_read = (start, stop, values, weights)
        return values, weights

    def _read_files(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        steps = self._num_steps_on_disk
        step_values, step_counts, stretch_values, stretch_weights = self._paths
        values = []
        weights = []
        if start < steps:
            values.append(_read(step_values, start, min(stop, steps)))
            weights.append(_read(step_counts, start, min(stop, steps)))
        if stop > steps:
            first, last = max(start - steps, 0), stop - steps
            values.append(_read(stretch_values, first, last))
            weights.append(_read(stretch_weights, first, last))
        if len(values) == 1:
            return values[0], weights[0]
        return np.concatenate([np.empty(0), *values]), np.concatenate([np.empty(0), *weights])

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole pool in memory, as (values, weights): for tests and small runs."""
        return self.read(0, self.num_entries)

    def _spill_steps(self) -> None:
        if not self._step_values:
            return
        self._last_read = None
        _append(self._paths[0], np.asarray(self._step_values, dtype=np.float64))
        _append(self._paths[1], np.asarray(self._step_counts, dtype=np.float64))
        self._num_steps_on_disk += len(self._step_values)
        self._step_values, self._step_counts = [], []

    def _spill_chunks(self) -> None:
        if not self._chunk_values:
            return
        self._last_read = None
        _append(self._paths[2], np.concatenate(self._chunk_values))
        lengths = [len(values) for values in self._chunk_values]
        _append(self._paths[3], np.repeat(np.asarray(self._chunk_weights, dtype=np.float64), lengths))
        self._num_chunk_on_disk += self._num_buffered_chunk
        self._chunk_values, self._chunk_weights, self._num_buffered_chunk = [], [], 0


def _append(path: Path, values: np.ndarray) -> None:
    with path.open("ab") as file:
        values.tofile(file)


def _read(path: Path, start: int, stop: int) -> np.ndarray:
    if stop <= start:
        return np.empty(0)
    return np.fromfile(path, dtype=np.float64, count=stop - start, offset=start * _ITEM_BYTES)
