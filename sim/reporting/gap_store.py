"""Every inter-token gap of a run, pooled, kept on disk once there are many.

A run emits one gap per generated token (singles, appended by the replicas' hottest path) and
one array per fast-forwarded decode stretch (shared by its whole batch, so weighted). Both go
to flat float64 files once SPILL_ENTRIES of them are buffered, so memory stays bounded however
long the run; the summary's statistics read them back in blocks (`streamed_stats`) and are exact.
The pooled order is every single, then every stretch entry, in the order they came.
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
_FILES = ("gaps_single.f64", "gaps_stretch_values.f64", "gaps_stretch_weights.f64")
"""The files of a store's folder: single gaps, stretch entries' values and their weights."""


class GapStore:
    """Pooled (gap seconds, times observed) entries: a `streamed_stats.Sample`."""

    def __init__(self, directory: Path) -> None:
        self.singles: list[float] = []
        """The list single gaps are appended to (the engine holds it: it is never replaced)."""
        self._chunk_values: list[np.ndarray] = []
        self._chunk_weights: list[int] = []
        self._num_buffered_chunk = 0
        self._singles_path, self._values_path, self._weights_path = (directory / name for name in _FILES)
        for path in (self._singles_path, self._values_path, self._weights_path):
            path.write_bytes(b"")
        self._num_singles_on_disk = 0
        self._num_chunk_on_disk = 0

    def add(self, seconds: np.ndarray, weight: int) -> None:
        self._chunk_values.append(np.asarray(seconds, dtype=np.float64))
        self._chunk_weights.append(weight)
        self._num_buffered_chunk += len(seconds)
        self.spill_if_full()

    def spill_if_full(self) -> None:
        """Append buffered gaps to the files once SPILL_ENTRIES of a kind are waiting."""
        if len(self.singles) >= SPILL_ENTRIES:
            self._spill_singles()
        if self._num_buffered_chunk >= SPILL_ENTRIES or len(self._chunk_values) >= SPILL_CHUNKS:
            self._spill_chunks()

    def finish(self) -> None:
        """Everything to disk: reading back then sees every gap."""
        self._spill_singles()
        self._spill_chunks()

    def extend_from(self, directory: Path) -> None:
        """Append the gaps a finished store wrote to `directory` (a worker process's, in a parallel
        run): its singles after this store's singles, its stretch entries after its stretch entries."""
        self.finish()
        for mine, name in zip((self._singles_path, self._values_path, self._weights_path), _FILES, strict=True):
            with mine.open("ab") as out, (directory / name).open("rb") as theirs:
                shutil.copyfileobj(theirs, out)
        singles, values, _ = (directory / name for name in _FILES)
        self._num_singles_on_disk += singles.stat().st_size // _ITEM_BYTES
        self._num_chunk_on_disk += values.stat().st_size // _ITEM_BYTES

    @property
    def num_entries(self) -> int:
        return self._num_singles_on_disk + self._num_chunk_on_disk

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Values and weights of pooled entries [start, stop) (after `finish`)."""
        singles = self._num_singles_on_disk
        values = []
        weights = []
        if start < singles:
            part = _read(self._singles_path, start, min(stop, singles))
            values.append(part)
            weights.append(np.ones(len(part)))
        if stop > singles:
            first, last = max(start - singles, 0), stop - singles
            values.append(_read(self._values_path, first, last))
            weights.append(_read(self._weights_path, first, last))
        if len(values) == 1:
            return values[0], weights[0]
        return np.concatenate([np.empty(0), *values]), np.concatenate([np.empty(0), *weights])

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole pool in memory, as (values, weights): for tests and small runs."""
        return self.read(0, self.num_entries)

    def _spill_singles(self) -> None:
        if not self.singles:
            return
        _append(self._singles_path, np.asarray(self.singles, dtype=np.float64))
        self._num_singles_on_disk += len(self.singles)
        self.singles.clear()

    def _spill_chunks(self) -> None:
        if not self._chunk_values:
            return
        _append(self._values_path, np.concatenate(self._chunk_values))
        lengths = [len(values) for values in self._chunk_values]
        _append(self._weights_path, np.repeat(np.asarray(self._chunk_weights, dtype=np.float64), lengths))
        self._num_chunk_on_disk += self._num_buffered_chunk
        self._chunk_values, self._chunk_weights, self._num_buffered_chunk = [], [], 0


def _append(path: Path, values: np.ndarray) -> None:
    with path.open("ab") as file:
        values.tofile(file)


def _read(path: Path, start: int, stop: int) -> np.ndarray:
    if stop <= start:
        return np.empty(0)
    return np.fromfile(path, dtype=np.float64, count=stop - start, offset=start * _ITEM_BYTES)
