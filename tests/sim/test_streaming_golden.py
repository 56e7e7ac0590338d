"""The bounded-memory data path changes no output: golden results written before it existed.

`tests/data/streaming_golden/<run>/` holds the files the code wrote before requests were made
lazily and rows, gaps and series were spilled to disk (the run's wall time and version aside).
Each run is compared with the default spill sizes and with tiny ones, so that row groups,
gap spills and block-wise statistics all cross many boundaries. The files were re-recorded
when fast-forward became exact for closed-loop clients (a stretch used to miss a client's send
during it; they are now the stepped engine's outputs, which fast-forward reproduces up to the
order in which token gaps are summed), when the vLLM 0.19 engine-overhead set was refitted, when
requests.parquet gained `picked_up_s` (every other column unchanged), and when that set gained the
host time of a step launched layer by layer (`cpu_per_eager_iteration_s`) and was refitted. Their
engine steps were lowered when decode stretches ran on through finishes without a decision, and
again when every step a trusted scheduler's decision is certain for (a prompt's later chunks
beside decodes too, and a step that promotes arrivals staged during the step before) was taken
without one (every other figure and table unchanged). The mean and standard deviation of the
token gaps moved in their last bit when a step's equal gaps became one weighted entry (the same
gaps, summed in another grouping). The open-loop run's engine steps rose (749 to 871), its replica
series gained the samples of the steps then taken one at a time, and its gaps' standard deviation
moved in its last bit, when a stretch beside a waiting request that would reuse unreferenced cached
blocks was made to end before its decodes evict one (every request's row unchanged).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from servesim.sim.api import run_experiment
from servesim.sim.reporting import gap_store, spill, streamed_stats
from servesim.sim.reporting.results import write_results

GOLDEN = Path(__file__).parents[1] / "data" / "streaming_golden"
TABLES = ("requests.parquet", "replica_series.parquet", "system_series.parquet")
RUN_DEPENDENT = {
    "summary.json": ("run", ("wall_s", "version")),
    "benchmark_serving.json": (None, ("servesim_version",)),
}


def _comparable(name: str, text: str) -> dict:
    data = json.loads(text)
    section, keys = RUN_DEPENDENT[name]
    for key in keys:
        (data[section] if section else data).pop(key)
    return data


@pytest.mark.parametrize("tiny", [False, True], ids=["default-spill", "tiny-spill"])
@pytest.mark.parametrize("run", ["open_loop", "closed_loop"])
def test_outputs_equal_the_golden_run(run: str, tiny: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if tiny:
        monkeypatch.setattr(gap_store, "SPILL_ENTRIES", 64)
        monkeypatch.setattr(streamed_stats, "READ_ENTRIES", 128)
        monkeypatch.setattr(spill, "ROWS_PER_GROUP", 50)
    result = run_experiment(GOLDEN / f"{run}.yaml")
    out = write_results(result, tmp_path / run, plots=False)
    golden = GOLDEN / run
    for name in TABLES:
        written = pd.read_parquet(out / name)
        pd.testing.assert_frame_equal(written, pd.read_parquet(golden / name), check_exact=True)
    for name in RUN_DEPENDENT:
        assert _comparable(name, (out / name).read_text()) == _comparable(name, (golden / name).read_text()), name
    if tiny:
        assert pq.ParquetFile(out / "requests.parquet").num_row_groups > 5
