"""The pieces a parallel run merges with: sorted tables, summed system series, pooled gaps, and
request rows recorded for a share of the ids."""
from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.policies.base import RouterPolicy
from servesim.sim.engine.request import Request, RequestState
from servesim.sim.errors import EngineInvariantError
from servesim.sim.experiment.classes import ServiceClass
from servesim.sim.parallel.merge import merge_sorted, merge_system_series
from servesim.sim.parallel.routing import _Destination
from servesim.sim.reporting import spill
from servesim.sim.reporting.gap_store import GapStore
from servesim.sim.reporting.request_records import RequestRecorder


def write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path, index=False)
    return path


@settings(max_examples=40)
@given(st.lists(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3)), max_size=40), min_size=1, max_size=4))
def test_sorted_tables_merge_by_key_then_ties_then_table_order(tmp_path_factory: Any, tables: list) -> None:
    folder = tmp_path_factory.mktemp("merge")
    spill_rows = spill.ROWS_PER_GROUP
    spill.ROWS_PER_GROUP = 3  # many blocks per table
    try:
        frames = [pd.DataFrame({"time_s": sorted(float(t) for t, _ in rows), "replica": [r for _, r in rows],
                                "source": i, "row": range(len(rows))}).astype({"replica": "int64", "row": "int64"})
                  for i, rows in enumerate(tables)]
        paths = [write(frame, folder / f"t{i}.parquet") for i, frame in enumerate(frames)]
        merged = pd.read_parquet(merge_sorted(paths, folder / "out.parquet", "time_s", ("replica",)))
    finally:
        spill.ROWS_PER_GROUP = spill_rows
    expected = pd.concat(frames, ignore_index=True).sort_values(["time_s", "replica", "source", "row"], kind="stable")
    pd.testing.assert_frame_equal(merged, expected.reset_index(drop=True), check_exact=True)


def test_system_series_sum_the_workers_counts_one_row_per_time(tmp_path: Path) -> None:
    first = write(pd.DataFrame({"time_s": [0.0, 1.0, 2.0, 2.0], "num_in_system": [1, 2, 1, 0]}), tmp_path / "a.parquet")
    second = write(pd.DataFrame({"time_s": [1.0, 1.5, 2.0], "num_in_system": [1, 0, 1]}), tmp_path / "b.parquet")
    merged = pd.read_parquet(merge_system_series([first, second], tmp_path / "out.parquet"))
    assert merged["time_s"].tolist() == [0.0, 1.0, 1.5, 2.0]
    assert merged["num_in_system"].tolist() == [1, 3, 2, 1]


def test_gaps_of_several_stores_pool_into_one(tmp_path: Path) -> None:
    stores = []
    for i, name in enumerate(("a", "b")):
        (tmp_path / name).mkdir()
        store = GapStore(tmp_path / name)
        store.add_step([0.1 * (i + 1), 0.2 * (i + 1)])
        store.add(np.array([1.0 + i]), weight=3)
        store.finish()
        stores.append(store)
    pooled = GapStore(tmp_path)
    for name in ("a", "b"):
        pooled.extend_from(tmp_path / name)
    values, weights = pooled.arrays()
    assert values.tolist() == [0.1, 0.2, 0.2, 0.4, 1.0, 2.0]
    assert weights.tolist() == [1, 1, 1, 1, 3, 3]


def ended(request_id: int) -> Request:
    request = Request(request_id, 0.0, 4, 1)
    request.state = RequestState.REJECTED
    return request


def test_a_share_records_its_own_ids_in_order(tmp_path: Path) -> None:
    recorder = RequestRecorder(tmp_path / "r.parquet",
                                {"default": ServiceClass("default", 0, None, None, None, None)},
                                ids=np.array([1, 4, 6]))
    for request_id in (4, 6):
        recorder.record(ended(request_id))
    assert recorder.num_written == 0 and recorder.num_held == 2
    recorder.record(ended(1))
    assert pd.read_parquet(recorder.close(3))["request_id"].tolist() == [1, 4, 6]
    with pytest.raises(EngineInvariantError, match="ended twice"):
        recorder.record(ended(4))


def test_routing_ahead_stops_a_router_that_reads_replica_state() -> None:
    class Peeking(RouterPolicy):
        def route(self, request: Any, replicas: Any, now: float) -> int:
            return int(replicas[0].num_outstanding)

    destinations = np.zeros(1, dtype=np.int64)
    stand_in = _Destination(0, "peeking", destinations)
    with pytest.raises(EngineInvariantError, match="depends_on_replicas"):
        cast(Any, Peeking(Peeking.Params())).route(None, [stand_in.view], 0.0)
