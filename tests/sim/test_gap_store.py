"""The gap store keeps at most SPILL_ENTRIES gaps of a kind in memory and reads back the pooled order."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from servesim.sim.reporting import gap_store
from servesim.sim.reporting.gap_store import GapStore


def test_spills_as_it_grows_and_reads_back_steps_then_stretches(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gap_store, "SPILL_ENTRIES", 16)
    store = GapStore(tmp_path)
    rng = np.random.default_rng(0)
    step_entries: list[tuple[float, int]] = []
    stretches: list[tuple[np.ndarray, int]] = []
    for step in range(200):
        # A step's gaps: runs of equal values (most requests of a batch share their gap).
        runs = [(float(rng.random()), int(rng.integers(1, 5))) for _ in range(int(rng.integers(0, 3)))]
        store.add_step([value for value, count in runs for _ in range(count)])
        step_entries.extend(runs)
        if step % 3 == 0:
            stretch = rng.random(int(rng.integers(1, 9)))
            store.add(stretch, weight=step % 5 + 1)
            stretches.append((stretch, step % 5 + 1))
        store.spill_if_full()
        assert len(store._step_values) < 16
    store.finish()
    values, weights = store.arrays()
    expected_values = np.concatenate([[v for v, _ in step_entries], *[s for s, _ in stretches]])
    expected_weights = np.concatenate([[c for _, c in step_entries], *[np.full(len(s), w) for s, w in stretches]])
    assert values.tolist() == expected_values.tolist()
    assert weights.tolist() == expected_weights.tolist()
    steps = len(step_entries)
    for start, stop in [(0, 3), (steps - 2, steps + 5), (steps, store.num_entries)]:
        part_values, part_weights = store.read(start, stop)
        assert part_values.tolist() == expected_values[start:stop].tolist()
        assert part_weights.tolist() == expected_weights[start:stop].tolist()


def test_a_steps_equal_gaps_are_one_entry_each_run(tmp_path: Path) -> None:
    store = GapStore(tmp_path)
    store.add_step([0.05, 0.05, 0.05, 0.2, 0.05, 0.05])
    store.finish()
    values, weights = store.arrays()
    assert values.tolist() == [0.05, 0.2, 0.05]
    assert weights.tolist() == [3, 1, 2]


def test_empty_store(tmp_path: Path) -> None:
    store = GapStore(tmp_path)
    store.finish()
    assert store.num_entries == 0
    assert [len(a) for a in store.arrays()] == [0, 0]
