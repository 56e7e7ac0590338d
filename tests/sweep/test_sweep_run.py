"""Running sweeps: the table, resuming, failing points, jobs > 1 equal to jobs = 1, and the CLI."""
import io
import json
import shutil

import pandas as pd
import pytest
import yaml

from servesim.sim import runner
from servesim.sim.cli import main
from servesim.sim.reporting.output_target import MARKER
from servesim.sim.sweeps.command import PointsProgress
from servesim.sim.sweeps.run import run_sweep
from servesim.sim.sweeps.table import flatten_summary
from tests.sweep.configs import tiny, tiny_config

SWEEP = {"variants": {"vllm": {}, "sarathi": {"scheduler": {"name": "sarathi"}}},
         "grid": {"cluster.replicas": [1, 2]}, "seeds": [0, 1]}


def test_the_table_has_a_row_per_point_with_swept_keys_and_flattened_metrics(tmp_path):
    report = run_sweep(tiny_config(SWEEP), tmp_path, tmp_path / "out", jobs=1)
    table = pd.read_parquet(tmp_path / "out" / "sweep.parquet")
    assert list(table.columns[:8]) == ["point", "label", "status", "error", "variant", "cluster.replicas", "seed",
                                       "offered_requests_per_s"]
    assert {"ttft_s.p99", "tpot_s.p99", "slo.attainment", "throughput.output_tokens_per_s",
            "classes.default.ttft_s.p50", "run.wall_s"} <= set(table.columns)
    assert len(table) == 8 and set(table["status"]) == {"ok"} and table["error"].isna().all()
    assert list(table["variant"]) == ["vllm"] * 4 + ["sarathi"] * 4
    assert list(table["seed"]) == [0, 1] * 4
    summary = json.loads((tmp_path / "out" / "points" / "p0005" / "summary.json").read_text())
    row = table.set_index("point").loc["p0005"]
    assert row["ttft_s.p99"] == summary["ttft_s"]["p99"] and row["num_finished"] == summary["num_finished"]
    assert row["offered_requests_per_s"] > 0
    assert report.table.equals(table)


def test_each_point_is_a_complete_results_directory_and_sweep_yaml_lists_the_points(tmp_path):
    run_sweep(tiny_config({"seeds": [0, 1]}), tmp_path, tmp_path / "out", jobs=1)
    point = tmp_path / "out" / "points" / "p0001"
    marker = json.loads((point / MARKER).read_text())
    assert marker["complete"] and {"summary.json", "requests.parquet", "config.yaml", "point.json"} <= set(
        marker["files"])
    assert yaml.safe_load((point / "config.yaml").read_text())["seed"] == 1
    manifest = yaml.safe_load((tmp_path / "out" / "sweep.yaml").read_text())
    assert [p["point"] for p in manifest["points"]] == ["p0000", "p0001"]
    assert manifest["points"][1]["values"] == {"seed": 1}


def test_flatten_keeps_numbers_by_dotted_path_and_nulls_as_nan():
    flat = flatten_summary({"a": 1, "b": {"c": 2.5, "d": None, "e": "text", "f": True}})
    assert flat["a"] == 1.0 and flat["b.c"] == 2.5 and flat["b.d"] != flat["b.d"]
    assert "b.e" not in flat and "b.f" not in flat


def test_jobs_in_processes_give_the_same_table_as_one_job(tmp_path):
    config = tiny_config({"variants": {"vllm": {}, "sarathi": {"scheduler": {"name": "sarathi"}}}, "seeds": [0, 1]})
    one = run_sweep(config, tmp_path, tmp_path / "one", jobs=1).table
    two = run_sweep(config, tmp_path, tmp_path / "two", jobs=2).table
    pd.testing.assert_frame_equal(one.drop(columns="run.wall_s"), two.drop(columns="run.wall_s"))
    for point in one["point"]:
        for name in ("requests.parquet", "config.yaml"):
            assert (tmp_path / "one" / "points" / point / name).read_bytes() == (
                tmp_path / "two" / "points" / point / name).read_bytes()


def test_rerunning_resumes_and_skips_finished_points(tmp_path, monkeypatch):
    config = tiny_config({"seeds": [0, 1, 2]})
    first = run_sweep(config, tmp_path, tmp_path / "out", jobs=1)
    assert first.num_resumed == 0
    (tmp_path / "out" / "sweep.parquet").unlink()  # as if killed before the table was written
    simulated = []
    real = runner.simulate
    monkeypatch.setattr(runner, "simulate", lambda prepared, *a: simulated.append(prepared.config.seed) or real(
        prepared, *a))
    shutil.rmtree(tmp_path / "out" / "points" / "p0001")
    again = run_sweep(config, tmp_path, tmp_path / "out", jobs=1)
    assert simulated == [1] and again.num_resumed == 2
    pd.testing.assert_frame_equal(first.table.drop(columns="run.wall_s"), again.table.drop(columns="run.wall_s"))


def test_a_changed_sweep_is_refused_for_an_existing_directory(tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tiny({"seeds": [0, 1]})))
    assert main(["sweep", str(path), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    before = (tmp_path / "out" / "sweep.yaml").read_bytes()
    assert main(["sweep", str(path), "-o", str(tmp_path / "out"), "--quiet", "--set", "sweep.seeds=[5, 6]"]) == 2
    assert "holds a different sweep" in capsys.readouterr().err
    assert (tmp_path / "out" / "sweep.yaml").read_bytes() == before


def test_a_failing_point_is_recorded_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    real = runner.simulate

    def simulate(prepared, *args):
        if prepared.config.seed == 1:
            raise RuntimeError("plug-in exploded")
        return real(prepared, *args)

    monkeypatch.setattr(runner, "simulate", simulate)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tiny({"seeds": [0, 1, 2]})))
    code = main(["sweep", str(path), "-o", str(tmp_path / "out"), "--jobs", "1", "--quiet"])
    captured = capsys.readouterr()
    assert code == 1
    assert "p0001 (seed=1) failed: RuntimeError: plug-in exploded" in captured.err
    table = pd.read_parquet(tmp_path / "out" / "sweep.parquet")
    assert list(table["status"]) == ["ok", "failed", "ok"]
    assert table["error"][1] == "RuntimeError: plug-in exploded" and pd.isna(table["ttft_s.p99"][1])
    assert not (tmp_path / "out" / "points" / "p0001").exists()
    monkeypatch.setattr(runner, "simulate", real)
    assert main(["sweep", str(path), "-o", str(tmp_path / "out"), "--jobs", "1", "--quiet"]) == 0  # retried
    assert list(pd.read_parquet(tmp_path / "out" / "sweep.parquet")["status"]) == ["ok"] * 3


def test_an_interrupt_keeps_finished_points_and_writes_their_table(tmp_path, monkeypatch, capsys):
    real = runner.simulate

    def simulate(prepared, *args):
        if prepared.config.seed == 2:
            raise KeyboardInterrupt
        return real(prepared, *args)

    monkeypatch.setattr(runner, "simulate", simulate)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tiny({"seeds": [0, 1, 2, 3]})))
    assert main(["sweep", str(path), "-o", str(tmp_path / "out"), "--jobs", "1", "--quiet"]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    assert list(pd.read_parquet(tmp_path / "out" / "sweep.parquet")["point"]) == ["p0000", "p0001"]
    assert sorted(p.name for p in (tmp_path / "out" / "points").iterdir()) == ["p0000", "p0001"]


def test_progress_lines_when_not_a_terminal(tmp_path):
    stream = io.StringIO()
    ticks = iter([0.0, 2.0, 4.0])
    run_sweep(tiny_config({"seeds": [0, 1]}), tmp_path, tmp_path / "out", jobs=1,
              progress=PointsProgress(stream, clock=lambda: next(ticks)))
    assert stream.getvalue().splitlines() == [
        "sweep: [1/2] p0000 ok (seed=0); elapsed 0:00:02, eta 0:00:02",
        "sweep: [2/2] p0001 ok (seed=1); elapsed 0:00:04, eta 0:00:00",
    ]


def test_a_config_with_a_sweep_is_not_run_by_simrun_run(tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tiny({"seeds": [0, 1]})))
    assert main(["run", str(path), "-o", str(tmp_path / "out")]) == 2
    assert "simrun sweep" in capsys.readouterr().err


def test_the_python_api_runs_a_sweep(tmp_path):
    from servesim.sim import sweep

    table = sweep(tiny({"seeds": [0]}), tmp_path / "out", overrides={"sweep.seeds": [4, 5]}, jobs=1)
    assert list(table["seed"]) == [4, 5]


@pytest.mark.parametrize(("options", "message"), [
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--jobs", "-3"], "--jobs must be at least 1"),
    (["--jobs", "2", "--backend", "ray"], "with --backend ray the cluster's CPUs decide"),
])
def test_contradictory_options_are_refused_before_anything_is_written(tmp_path, capsys, options, message):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tiny({"seeds": [0, 1]})))
    assert main(["sweep", str(path), "-o", str(tmp_path / "out"), "--quiet", *options]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_simrun_imports_neither_ray_nor_torch():
    import subprocess
    import sys

    code = "import sys, servesim.sim.cli, servesim.sim.sweeps.run; print(sorted({'ray', 'torch'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_goodput_probes_run_through_the_point_runner_and_tabulate_like_a_sweep():
    from servesim.sim.goodput import max_goodput

    config = tiny_config({"seeds": [0]}).model_copy(update={"sweep": None})
    search = max_goodput(config, low=0.5, high=8.0, tolerance=0.5)
    table = search.table()
    assert list(table["point"]) == [f"probe{i:02d}" for i in range(len(search.probes))]
    assert list(table["workload.rate_scale"]) == [p[0] for p in search.probes]
    assert list(table["slo.attainment"]) == [p[2] for p in search.probes]
    assert list(table["offered_requests_per_s"]) == [p[1] for p in search.probes]
    assert set(table["status"]) == {"ok"}


def test_progress_bar_in_a_terminal_counts_resumed_points(tmp_path):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    config = tiny_config({"seeds": [0, 1, 2]})
    run_sweep(config, tmp_path, tmp_path / "out", jobs=1)
    shutil.rmtree(tmp_path / "out" / "points" / "p0002")
    stream = Terminal()
    run_sweep(config, tmp_path, tmp_path / "out", jobs=1, progress=PointsProgress(stream))
    drawn = stream.getvalue()
    assert "sweep: [....................] 0.0% eta ?, 2/3 points done, - a point" in drawn
    assert "sweep: [####################] finished in" in drawn and "3/3 points done" in drawn
    assert drawn.endswith("a point\n")


def test_simrun_validate_checks_every_point_of_a_sweep(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(tiny({"seeds": [0, 1, 2]})))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(tiny({"grid": {"hardware": ["h100-sxm", "h900"]}})))
    assert main(["validate", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert f"{good}: ok (a sweep of 3 points, each checked)" in captured.out
    assert "p0001 (hardware=h900)" in captured.err
