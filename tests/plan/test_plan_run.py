"""Running a placement search: deterministic tables, the best is the table's argmax, resuming, skipping."""
import json
import math

import pandas as pd
import pytest

from servesim.sim.placement.run import run_plan
from servesim.sim.placement.search import Bound, best_probe
from servesim.sim.placement.table import format_table
from tests.plan.configs import config_of, roofline_plan, tiny_plan

UNIFIED = {"gpus": 2, "tp": [1, 2], "modes": ["unified"], "max_rate": 200}


def search(tmp_path, data, name="out", **options):
    return run_plan(config_of(data), tmp_path, tmp_path / name, jobs=options.pop("jobs", 1), **options)


@pytest.fixture(scope="module")
def roofline_report(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("plan")
    return search(tmp_path, roofline_plan(UNIFIED)), tmp_path


def test_a_small_roofline_plan_ranks_every_candidate_by_goodput_per_gpu(roofline_report):
    report, _ = roofline_report
    table = report.table
    assert list(table["candidate"]) == ["c000", "c001", "c002"]
    assert list(table["label"]) == ["unified 1 x tp1", "unified 2 x tp1", "unified 1 x tp2"]
    assert (table["status"] == "ok").all()
    assert (table["max_goodput_requests_per_s"] > 0).all()
    assert list(table["goodput_per_gpu"]) == pytest.approx(list(table["max_goodput_requests_per_s"] / table["gpus"]))
    best = table["goodput_per_gpu"].max()
    assert table.loc[table["best"], "goodput_per_gpu"].tolist() == [best]
    first_best = table[table["goodput_per_gpu"] == best].iloc[0]
    assert report.best["candidate"] == first_best["candidate"]
    assert report.best["goodput_per_gpu"] == pytest.approx(best)


def test_each_candidates_goodput_is_the_highest_probe_that_met_the_target(roofline_report):
    report, _ = roofline_report
    for row in report.table.itertuples():
        probes = report.probes[report.probes["candidate"] == row.candidate]
        assert len(probes) == row.num_probes
        met = probes[probes["attainment"] >= 0.9]
        assert row.max_goodput_requests_per_s == pytest.approx(met["offered_requests_per_s"].max())
        if row.bound == "exact":
            missed = probes[probes["attainment"] < 0.9]["offered_requests_per_s"]
            assert missed.min() > row.max_goodput_requests_per_s


def test_the_bracket_is_the_budgets_rates_scaled_to_each_candidates_gpus(roofline_report):
    report, _ = roofline_report
    highest = report.probes.groupby("candidate")["offered_requests_per_s"].max()
    lowest = report.probes.groupby("candidate")["offered_requests_per_s"].min()
    assert highest["c000"] == pytest.approx(100, rel=1e-6) and highest["c001"] == pytest.approx(200, rel=1e-6)
    assert lowest["c000"] == pytest.approx(100 / 256, rel=1e-6)


def test_the_results_directory_holds_the_tables_and_the_best_plan(roofline_report):
    report, tmp_path = roofline_report
    out = tmp_path / "out"
    pd.testing.assert_frame_equal(pd.read_parquet(out / "plan.parquet"), report.table)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "probes.parquet"), report.probes)
    written = json.loads((out / "plan.json").read_text())
    assert written["best"] == report.best and written["complete"] is True
    assert written["num_candidates"] == 3 and written["num_ok"] == 3
    assert written["best"]["cluster"]["parallel"]["tp"] in (1, 2)


def test_the_same_plan_gives_the_same_tables_in_parallel_processes(roofline_report, tmp_path):
    report, _ = roofline_report
    again = search(tmp_path, roofline_plan(UNIFIED), jobs=2)
    pd.testing.assert_frame_equal(again.table, report.table)
    pd.testing.assert_frame_equal(again.probes, report.probes)


def test_a_candidate_whose_model_does_not_fit_is_skipped_with_the_reason(tmp_path):
    report = search(tmp_path, tiny_plan({"gpus": 4, "tp": [1, 4], "modes": ["unified"], "max_rate": 100},
                                        model="llama-3.1-70b"))
    table = report.table.set_index("label")
    assert (table.loc[[f"unified {n} x tp1" for n in range(1, 5)], "status"] == "skipped").all()
    assert "does not fit on h100-sxm with tp=1" in table.loc["unified 1 x tp1", "error"]
    assert math.isnan(table.loc["unified 1 x tp1", "max_goodput_requests_per_s"])
    assert table.loc["unified 1 x tp4", "status"] == "ok" and table.loc["unified 1 x tp4", "best"]
    assert report.best["label"] == "unified 1 x tp4"
    assert "skipped: memory: llama-3.1-70b does not fit" in format_table(report.table)


def test_a_rerun_reuses_finished_candidates_and_reruns_changed_ones(tmp_path):
    data = tiny_plan({"gpus": 2, "tp": [1], "modes": ["unified"]})
    first = search(tmp_path, data)
    again = search(tmp_path, data)
    assert again.num_resumed == 2
    pd.testing.assert_frame_equal(again.table, first.table)
    pd.testing.assert_frame_equal(again.probes, first.probes)
    data["plan"]["tolerance"] = 0.2
    changed = search(tmp_path, data)
    assert changed.num_resumed == 0


def test_an_interrupted_plan_writes_what_finished_and_resumes(tmp_path):
    data = tiny_plan({"gpus": 3, "tp": [1], "modes": ["unified"]})

    def interrupt(name, label, error):
        if name == "c001":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        search(tmp_path, data, on_finished=interrupt)
    written = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert written["complete"] is False and written["num_candidates"] == 2
    resumed = search(tmp_path, data)
    assert resumed.num_resumed == 2 and len(resumed.table) == 3 and resumed.complete


def test_a_candidate_below_the_lowest_rate_scores_zero_and_is_never_best(tmp_path):
    impossible = {"ttft_s": 0.005}  # shorter than one iteration
    report = search(tmp_path, tiny_plan({"gpus": 2, "tp": [1], "modes": ["unified"]}, slo=impossible))
    assert (report.table["bound"] == "below").all()
    assert (report.table["max_goodput_requests_per_s"] == 0).all()
    assert report.best is None and not report.table["best"].any()


@pytest.mark.parametrize(("probes", "expected"), [
    ([(1.0, 10.0, 0.5)], (0.0, Bound.BELOW)),
    ([(1.0, 10.0, 0.95), (2.0, 20.0, 0.91)], (20.0, Bound.AT_LEAST)),
    ([(1.0, 10.0, 0.95), (4.0, 40.0, 0.2), (2.0, 20.0, 0.9), (2.8, 28.0, 0.89)], (20.0, Bound.EXACT)),
])
def test_best_probe(probes, expected):
    assert best_probe(probes, 0.9) == expected
