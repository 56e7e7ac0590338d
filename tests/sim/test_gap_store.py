"""The gap store keeps at most SPILL_ENTRIES gaps of a kind in memory and reads back the pooled order."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from servesim.sim.reporting import gap_store
from servesim.sim.reporting.gap_store import GapStore


def test_spills_as_it_grows_and_reads_back_singles_then_stretches(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gap_store, "SPILL_ENTRIES", 16)
    store = GapStore(tmp_path)
    rng = np.random.default_rng(0)
    singles: list[float] = []
    stretches: list[tuple[np.ndarray, int]] = []
    for step in range(200):
        for _ in range(int(rng.integers(0, 4))):
            value = float(rng.random())
            store.singles.append(value)
            singles.append(value)
        if step % 3 == 0:
            stretch = rng.random(int(rng.integers(1, 9)))
            store.add(stretch, weight=step % 5 + 1)
            stretches.append((stretch, step % 5 + 1))
        store.spill_if_full()
        assert len(store.singles) < 16
    store.finish()
    values, weights = store.arrays()
    expected_values = np.concatenate([singles, *[s for s, _ in stretches]])
    expected_weights = np.concatenate([np.ones(len(singles)), *[np.full(len(s), w) for s, w in stretches]])
    assert values.tolist() == expected_values.tolist()
    assert weights.tolist() == expected_weights.tolist()
    for start, stop in [(0, 3), (len(singles) - 2, len(singles) + 5), (len(singles), store.num_entries)]:
        part_values, part_weights = store.read(start, stop)
        assert part_values.tolist() == expected_values[start:stop].tolist()
        assert part_weights.tolist() == expected_weights[start:stop].tolist()


def test_empty_store(tmp_path: Path) -> None:
    store = GapStore(tmp_path)
    store.finish()
    assert store.num_entries == 0
    assert [len(a) for a in store.arrays()] == [0, 0]
