"""`simrun sweep` shows its progress with the reporter single runs use: a bar over points in a terminal."""
import io
from types import SimpleNamespace

from servesim.sim.sweeps.command import PointsProgress
from servesim.sim.sweeps.progress import PointsExtent


class Terminal(io.StringIO):
    def isatty(self):
        return True


def row(name: str, error: str | None = None):
    return SimpleNamespace(point=SimpleNamespace(name=name, label=f"seed={name[-1]}"), error=error)


def test_the_bar_moves_a_point_at_a_time_and_names_failures_on_their_own_line():
    stream = Terminal()
    ticks = iter([0.0, 0.0, 0.0, 10.0, 20.0, 30.0, 30.0])
    progress = PointsProgress(stream, clock=lambda: next(ticks))
    progress.begin(4, 1)
    progress.advance(row("p0001"))
    progress.advance(row("p0002", "boom"))
    progress.advance(row("p0003"))
    progress.end()
    lines = stream.getvalue().split("\n")
    assert lines[0].split("\r")[-1].rstrip() == (
        "sweep: [######..............] 33.3% eta 20 s, 2/4 points done, 10 s a point")
    assert lines[1] == "p0002 (seed=2) failed"
    assert lines[2].split("\r")[-1].rstrip() == (
        "sweep: [####################] finished in 30 s: 4/4 points done, 10 s a point")
    assert lines[3] == ""


def test_an_interrupted_sweep_ends_the_bar_line_without_a_finish():
    stream = Terminal()
    progress = PointsProgress(stream, clock=lambda: 0.0)
    progress.begin(3, 0)
    progress.end()
    assert stream.getvalue().endswith("\n") and "finished" not in stream.getvalue()


def test_points_extent_counts_the_share_of_points_run_here():
    extent = PointsExtent(10, 4)
    assert extent.fraction(4, 0.0) == 0.0 and extent.fraction(7, 0.0) == 0.5 and extent.fraction(10, 0.0) == 1.0
    assert extent.describe(7, 0.0, "requests done") == "7/10 points done"
    assert extent.rate(7, 90.0) == "30 s a point" and extent.rate(4, 5.0) == "- a point"
    assert PointsExtent(2, 2).fraction(2, 0.0) == 1.0
