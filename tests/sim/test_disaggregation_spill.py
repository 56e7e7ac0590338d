"""A disaggregated run's transfers and decode-queue rows go to disk as they come, and the files
are the ones written when the rows were held in lists until the end.

`tests/data/disaggregation_golden/` holds those files, written by the code before the spill
(a layerwise run with back-pressure: 400 transfers, 636 queue rows). The run is compared with the
default row groups and with groups of 50 rows, so that both tables cross many group boundaries.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from servesim.sim.api import run_experiment
from servesim.sim.experiment.loading import validate_config
from servesim.sim.reporting import spill
from servesim.sim.reporting.results import write_results

GOLDEN = Path(__file__).parents[1] / "data" / "disaggregation_golden"
TABLES = ("transfers.parquet", "decode_queue.parquet")


@pytest.mark.parametrize("tiny", [False, True], ids=["default-spill", "tiny-spill"])
def test_the_disaggregated_tables_equal_the_golden_run(tiny: bool, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if tiny:
        monkeypatch.setattr(spill, "ROWS_PER_GROUP", 50)
    result = run_experiment(GOLDEN / "layerwise.yaml")
    out = write_results(result, tmp_path / "run", plots=False)
    for name in TABLES:
        written = pd.read_parquet(out / name)
        pd.testing.assert_frame_equal(written, pd.read_parquet(GOLDEN / name), check_exact=True)
        assert pq.ParquetFile(out / name).num_row_groups == (-(-len(written) // 50) if tiny else 1)
    assert result.summary["disaggregation"]["max_waiting_for_blocks"] == 17


def test_a_run_whose_decode_replicas_never_queue_writes_empty_tables_of_the_right_types(tmp_path: Path) -> None:
    """One request of a single token ends on its prefill replica: nothing moves, nothing queues."""
    trace = tmp_path / "trace.csv"
    pd.DataFrame({"arrival_s": [0.0], "prompt_tokens": [100], "output_tokens": [1]}).to_csv(trace, index=False)
    config = {
        "name": "one", "model": "llama-3.1-8b", "cost_model": {"kind": "constant", "iteration_s": 0.01},
        "cluster": {"pools": [{"name": "p", "role": "prefill"}, {"name": "d", "role": "decode"}]},
        "workload": {"trace": {"path": str(trace), "format": "csv"}},
    }
    result = run_experiment(validate_config(config))
    transfers, queue = result.table("transfers"), result.table("decode_queue")
    assert transfers.empty and queue.empty
    golden = pd.read_parquet(GOLDEN / "transfers.parquet")
    assert dict(transfers.dtypes) == dict(golden.dtypes)
    assert list(queue.columns) == ["time_s", "replica", "num_waiting_for_blocks"]
