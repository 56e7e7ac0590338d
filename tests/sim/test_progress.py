"""Progress of long runs: lines at the configured interval when piped, a bar in a terminal, nothing
with --quiet, and identical results with and without it. Wall time comes from a fake clock."""
from __future__ import annotations

import io
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
import simpy
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import servesim.sim.runner as runner
from servesim.sim.cli import main
from servesim.sim.experiment.loading import validate_config
from servesim.sim.reporting import progress
from servesim.sim.reporting.progress import (
    BAR_DELAY_S,
    CHECK_EVERY,
    QUIET,
    ProgressMode,
    ProgressOptions,
    ProgressReporter,
    RunExtent,
    format_duration,
    progress_options,
    run_with_heartbeat,
)
from servesim.sim.runner import prepare, run_extent, simulate

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "real_run_sample"
SMALL = {
    "name": "progress",
    "cost_model": {"kind": "roofline"},  # no table warnings among the progress lines
    "workload": {"arrival": {"process": "poisson", "rate": 5.0},
                 "prompt_tokens": {"dist": "fixed", "value": 200}, "output_tokens": {"dist": "uniform", "min": 5,
                                                                                      "max": 60},
                 "num_requests": 60},
    "slo": {"ttft_s": 0.5},
    "output": {"plots": False},
}


class FakeClock:
    """Wall time that moves only when told to; `step_s` per reading, to make a fast run look slow."""

    def __init__(self, step_s: float = 0.0) -> None:
        self.now = 100.0
        self.step_s = step_s
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        self.now += self.step_s
        return self.now


class Stream(io.StringIO):
    """A stderr that remembers the fake wall time of each line, and may claim to be a terminal."""

    def __init__(self, clock: FakeClock, tty: bool = False) -> None:
        super().__init__()
        self.clock = clock
        self.tty = tty
        self.line_times: list[float] = []

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        self.line_times += [self.clock.now] * text.count("\n")
        return super().write(text)


EXTENT = RunExtent(1000, 100.0)


def reporter(clock: FakeClock, stream: Stream, mode: ProgressMode = ProgressMode.LINES, interval_s: float = 5.0,
             extent: RunExtent = EXTENT) -> ProgressReporter:
    return ProgressReporter(extent, mode, stream, "", interval_s, clock)


def test_a_line_reads_as_the_readme_shows() -> None:
    extent = RunExtent(10_000, 1930.0)
    assert extent.describe(4210, 812.4) == "sim 812.4/1,930.0 s, 4,210/10,000 requests done"
    assert RunExtent(10, None).describe(3, 2.5) == "sim 2.5 s, 3/10 requests done"
    assert [format_duration(s) for s in (4.24, 42, 720, 5400)] == ["4.2 s", "42 s", "12 min", "1.5 h"]


def test_the_share_done_is_the_mean_of_simulated_time_and_requests_done() -> None:
    extent = RunExtent(100, 50.0)
    assert extent.fraction(0, 0.0) == 0.0
    assert extent.fraction(20, 25.0) == pytest.approx((0.5 + 0.2) / 2)
    assert extent.fraction(60, 80.0) == pytest.approx((1.0 + 0.6) / 2)  # draining after the last arrival
    assert extent.fraction(100, 90.0) == 1.0
    assert RunExtent(100, None).fraction(30, 999.0) == pytest.approx(0.3)  # closed loop: requests only
    assert RunExtent(100, 0.0).fraction(30, 5.0) == pytest.approx(0.3)  # everything arrives at time 0


def test_piped_progress_prints_one_line_per_interval_and_a_final_line() -> None:
    clock = FakeClock()
    stream = Stream(clock)
    report = reporter(clock, stream, interval_s=5.0)
    for i in range(1, 1001):
        clock.now = 100.0 + i * 0.05  # 50 wall seconds for the run
        report(i, i * 0.1)
    report.finish()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 8 + 1  # the clock is read every 16 calls (0.8 s): lines at 5.6 s, 11.2 s, ... 44.8 s
    assert lines[0].startswith("progress: ") and "requests done" in lines[0] and "eta" in lines[0]
    assert lines[-1] == "progress: finished in 50 s: sim 100.0/100.0 s, 1,000/1,000 requests done, 20 req/s"
    times = stream.line_times[:-1]
    assert 105.0 <= times[0] <= 105.0 + CHECK_EVERY * 0.05
    assert all(5.0 <= later - earlier <= 5.0 + CHECK_EVERY * 0.05 for earlier, later in zip(times, times[1:],
                                                                                            strict=False))


def test_a_line_shows_the_share_rate_and_eta() -> None:
    clock = FakeClock()
    stream = Stream(clock)
    report = reporter(clock, stream, interval_s=1.0, extent=RunExtent(1000, 100.0))
    clock.now = 110.0  # 10 wall seconds in
    for _ in range(CHECK_EVERY):
        report(250, 50.0)
    assert stream.getvalue() == "progress: 37.5% sim 50.0/100.0 s, 250/1,000 requests done, 25 req/s, eta 17 s\n"


@settings(max_examples=200)
@given(interval_s=st.floats(0.5, 20.0), steps=st.lists(st.floats(0.0, 3.0), min_size=1, max_size=400))
def test_piped_lines_never_come_closer_than_the_interval(interval_s: float, steps: list[float]) -> None:
    clock = FakeClock()
    stream = Stream(clock)
    report = reporter(clock, stream, interval_s=interval_s)
    for i, step in enumerate(steps):
        clock.now += step
        report(i, float(i))
    times = stream.line_times
    if times:
        assert times[0] - 100.0 >= interval_s
    assert all(later - earlier >= interval_s for earlier, later in zip(times, times[1:], strict=False))
    assert len(times) <= (clock.now - 100.0) / interval_s


def test_a_short_run_prints_nothing_not_even_a_final_line() -> None:
    clock = FakeClock()
    stream = Stream(clock)
    report = reporter(clock, stream, interval_s=5.0)
    for i in range(500):
        clock.now = 100.0 + i * 0.001
        report(i, float(i))
    report.finish()
    assert stream.getvalue() == ""


def test_the_wall_clock_is_read_only_every_few_callbacks() -> None:
    clock = FakeClock()
    report = reporter(clock, Stream(clock))
    clock.readings = 0
    for i in range(CHECK_EVERY * 50):
        report(i, float(i))
    assert clock.readings == 50


def test_in_a_terminal_the_bar_is_redrawn_in_place_after_its_delay(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    clock = FakeClock()
    stream = Stream(clock, tty=True)
    report = reporter(clock, stream, mode=ProgressMode.BAR)
    for i in range(1, 401):
        clock.now = 100.0 + i * 0.01  # 4 wall seconds
        report(i, i * 0.125)
    text = stream.getvalue()
    assert "\n" not in text
    draws = text.split("\r")[1:]
    assert draws and all(d.startswith("[") for d in draws)
    assert stream.line_times == []
    assert draws[-1] == ("[#########...........] 45.0% eta 4.9 s, sim 50.0/100.0 s, 400/1,000 done, "
                         "100 req/s")  # 45%: the mean of 50 of 100 s and 400 of 1,000 done
    report.finish()
    assert stream.getvalue() == text + ("\r[####################] finished in 4.0 s: sim 50.0/100.0 s, "
                                        "400/1,000 done, 100 req/s\n")
    first_draw = 100.0 + BAR_DELAY_S
    assert len(draws) <= (clock.now - first_draw) / progress.BAR_REFRESH_S + 1


def test_the_bar_fits_a_narrow_terminal(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    clock = FakeClock(step_s=1.0)
    stream = Stream(clock, tty=True)
    report = reporter(clock, stream, mode=ProgressMode.BAR)
    for i in range(CHECK_EVERY * 10):
        report(i, 1.0)
    report.finish()
    draws = stream.getvalue().rstrip("\n").split("\r")[1:]
    assert len(draws) > 2 and all(len(draw.rstrip()) <= 39 for draw in draws)


def test_a_failed_run_ends_the_bar_line_without_a_final_line(slow_clock) -> None:
    stream = Stream(slow_clock, tty=True)
    options = ProgressOptions(ProgressMode.BAR, stream=stream)
    with pytest.raises(KeyboardInterrupt), options.reporter(RunExtent(10, 10.0)) as callback:
        assert callback is not None
        for i in range(CHECK_EVERY * 4):
            callback(i, float(i))
        raise KeyboardInterrupt
    assert stream.getvalue().endswith("\n") and "finished" not in stream.getvalue()


def test_the_mode_follows_quiet_and_whether_stderr_is_a_terminal() -> None:
    clock = FakeClock()
    assert progress_options(True, stream=Stream(clock, tty=True)) is QUIET
    assert progress_options(False, stream=Stream(clock, tty=True)).mode is ProgressMode.BAR
    piped = progress_options(False, 2.0, Stream(clock))
    assert (piped.mode, piped.interval_s) == (ProgressMode.LINES, 2.0)
    with QUIET.reporter(RunExtent(1, 1.0)) as callback:
        assert callback is None


def test_the_heartbeat_steps_every_event_and_ends_where_run_ends() -> None:
    def ticking(env: simpy.Environment, n: int):
        for _ in range(n):
            yield env.timeout(0.5)

    plain, beating = simpy.Environment(), simpy.Environment()
    plain.process(ticking(plain, 100))
    beating.process(ticking(beating, 100))
    beats: list[float] = []
    plain.run()
    run_with_heartbeat(beating, lambda: beats.append(beating.now), every=10)
    assert beating.now == plain.now == 50.0
    assert len(beats) == 10  # 102 events: the process's start, 100 timeouts, its end
    assert beats == sorted(beats) and beats[-1] < 50.0


def test_results_are_identical_with_and_without_progress(monkeypatch) -> None:
    monkeypatch.setattr(runner, "run_with_heartbeat", partial(run_with_heartbeat, every=7))
    clock = FakeClock(step_s=2.0)
    stream = Stream(clock)
    prepared = prepare(validate_config(SMALL))
    quiet = simulate(prepared)
    monkeypatch.setattr(progress, "wall_clock", clock)
    with ProgressOptions(ProgressMode.LINES, 1.0, stream).reporter(run_extent(prepared)) as callback:
        shown = simulate(prepared, callback)
    assert len(stream.getvalue().splitlines()) > 3
    pd.testing.assert_frame_equal(quiet.requests, shown.requests)
    pd.testing.assert_frame_equal(quiet.replica_series, shown.replica_series)
    pd.testing.assert_frame_equal(quiet.system_series, shown.system_series)
    for summary in (quiet.summary, shown.summary):
        del summary["run"]["wall_s"]
    assert quiet.summary == shown.summary


def test_the_extent_is_the_workloads_requests_and_last_arrival() -> None:
    prepared = prepare(validate_config(SMALL))
    extent = run_extent(prepared)
    assert extent.num_requests == 60
    assert extent.last_arrival_s == pytest.approx(float(prepared.workload.table()["arrival_s"].max()))
    closed = {**SMALL, "workload": {**SMALL["workload"], "arrival": None, "clients": {"concurrency": 4}}}
    assert run_extent(prepare(validate_config(closed))).last_arrival_s is None


# --- the commands -------------------------------------------------------------------------------

@pytest.fixture
def slow_clock(monkeypatch) -> FakeClock:
    """Every reading of the wall clock is ten seconds later: every run looks long."""
    clock = FakeClock(step_s=10.0)
    monkeypatch.setattr(progress, "wall_clock", clock)
    return clock


def config_file(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_simrun_run_piped_prints_progress_lines_and_quiet_prints_none(tmp_path, capsys, slow_clock) -> None:
    config = config_file(tmp_path, SMALL)
    assert main(["run", str(config), "-o", str(tmp_path / "shown"), "--progress-interval", "2"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 2 and all(line.startswith("progress: ") for line in lines)
    assert lines[-1].startswith("progress: finished in ") and "60/60 requests done" in lines[-1]
    for flag in ("--quiet", "-q", "--no-progress"):
        assert main(["run", str(config), "-o", str(tmp_path / "quiet"), flag]) == 0
        assert capsys.readouterr().err == ""
    shown, quiet = (pd.read_parquet(tmp_path / name / "requests.parquet") for name in ("shown", "quiet"))
    pd.testing.assert_frame_equal(shown, quiet)


def test_simrun_run_in_a_terminal_draws_a_bar(tmp_path, monkeypatch, slow_clock) -> None:
    terminal = Stream(slow_clock, tty=True)
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["run", str(config_file(tmp_path, SMALL)), "-o", str(tmp_path / "r")]) == 0
    text = terminal.getvalue()
    assert text.startswith("\r[") and text.endswith("\n") and text.count("\n") == 1


def test_variants_and_goodput_probes_are_labelled(tmp_path, capsys, slow_clock) -> None:
    data = {**SMALL, "variants": {"a": {}, "b": {"scheduler": {"name": "vllm", "max_num_seqs": 4}}}}
    assert main(["run", str(config_file(tmp_path, data)), "-o", str(tmp_path / "v")]) == 0
    err = capsys.readouterr().err
    assert "progress (variant a): " in err and "progress (variant b): " in err
    goodput = {**SMALL, "cost_model": {"kind": "constant", "iteration_s": 0.01}}
    assert main(["goodput", str(config_file(tmp_path, goodput)), "--low", "0.5", "--high", "1", "--tolerance",
                 "0.5"]) == 0
    err = capsys.readouterr().err
    assert "progress (scale 0.500): " in err and "progress (scale 1.000): " in err


def test_validate_real_shows_the_replays_progress(tmp_path, capsys, slow_clock) -> None:
    assert main(["validate-real", str(SAMPLE), "--hardware", "l40s", "-o", str(tmp_path / "vr")]) == 0
    err = capsys.readouterr().err
    assert "progress: finished in " in err and "24/24 requests done" in err
