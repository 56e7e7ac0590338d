"""Progress of a long simulation on stderr: a bar in a terminal, a line every few seconds in a log.

One reporter serves every command that simulates (`run`, `goodput`, `validate-real`,
`fidelity`, and any later one): a command builds `ProgressOptions` from its flags once
(`add_progress_flags`, `progress_options`) and wraps each simulation in
`options.reporter(extent, label)`, which yields the `progress(num_done, now)` callback that
`simulate` takes. The callback is called on every finished request and every few thousand
events, so it reads the wall clock only every `CHECK_EVERY` calls: progress costs nothing
measurable. Progress goes to stderr only and never changes what a run computes.
"""
from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, TextIO

import simpy

from servesim.sim.errors import UserInputError

ProgressCallback = Callable[[int, float], None]
"""`progress(num_done, now)`: requests finished or rejected so far, and the simulated time."""

DEFAULT_INTERVAL_S = 5.0
"""Wall seconds between two progress lines when stderr is not a terminal."""
BAR_DELAY_S = 2.0
"""The bar appears only for runs longer than this (wall seconds), so short runs stay quiet."""
BAR_REFRESH_S = 0.5
CHECK_EVERY = 16
"""Callbacks between two readings of the wall clock."""
EVENTS_PER_BEAT = 4096
"""SimPy events between two heartbeats: progress moves with simulated time when nothing finishes."""
BAR_WIDTH = 20

wall_clock: Callable[[], float] = time.monotonic
"""Where the reporter reads wall time (a test replaces it with a fake clock)."""


class ProgressMode(Enum):
    OFF = "off"
    BAR = "bar"
    """A bar redrawn in place: stderr is a terminal."""
    LINES = "lines"
    """One line every interval: stderr is a pipe or a log file."""


@dataclass(frozen=True)
class RunExtent:
    """What one simulation covers: its requests and, for open-loop arrivals, the last arrival time."""

    num_requests: int
    last_arrival_s: float | None
    """None when arrivals are not known in advance (closed-loop clients)."""

    def fraction(self, num_done: int, now: float) -> float:
        """Share of the run done: the mean of simulated time over the last arrival and requests done.

        Simulated time keeps the share moving when few requests finish; requests done keep it
        moving while the queue drains after the last arrival. Both reach 1 when the run ends.
        """
        shares = []
        if self.last_arrival_s is not None and self.last_arrival_s > 0:
            shares.append(min(now / self.last_arrival_s, 1.0))
        if self.num_requests > 0:
            shares.append(min(num_done / self.num_requests, 1.0))
        return sum(shares) / len(shares) if shares else 0.0

    def describe(self, num_done: int, now: float, done: str = "requests done") -> str:
        """`sim 812.4/1,930.0 s, 4,210/10,000 requests done`."""
        sim = f"sim {now:,.1f}/{self.last_arrival_s:,.1f} s" if self.last_arrival_s else f"sim {now:,.1f} s"
        return f"{sim}, {num_done:,}/{self.num_requests:,} {done}"

    @staticmethod
    def rate(num_done: int, elapsed: float) -> str:
        """Requests per wall second: `1,234 req/s`."""
        return f"{num_done / elapsed:,.0f} req/s" if elapsed > 0 else "- req/s"


class Extent(Protocol):
    """What a reporter shows progress through: a simulation's requests (RunExtent), a sweep's points, ..."""

    def fraction(self, num_done: int, now: float) -> float: ...

    def describe(self, num_done: int, now: float, done: str) -> str: ...

    def rate(self, num_done: int, elapsed: float) -> str: ...


def format_duration(seconds: float) -> str:
    """A wall duration for a human: `4.2 s`, `42 s`, `12 min`, `1.5 h`."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class ProgressReporter:
    """Shows one simulation's progress (or a sweep's); called through `progress(num_done, now)`.

    `delay_s` is how long a bar waits before it first shows; `check_every` how many calls pass
    between two readings of the clock (a sweep, called once a point, reads it every time).
    """

    extent: Extent
    mode: ProgressMode
    stream: TextIO
    label: str = ""
    interval_s: float = DEFAULT_INTERVAL_S
    clock: Callable[[], float] = field(default_factory=lambda: wall_clock)
    delay_s: float = BAR_DELAY_S
    check_every: int = CHECK_EVERY
    started: float = field(init=False)
    num_done: int = field(init=False, default=0)
    now: float = field(init=False, default=0.0)
    num_shown: int = field(init=False, default=0)
    _due: float = field(init=False)
    _countdown: int = field(init=False)
    _width: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.started = self.clock()
        self._due = self.started + (self.delay_s if self.mode is ProgressMode.BAR else self.interval_s)
        self._countdown = self.check_every

    def __call__(self, num_done: int, now: float) -> None:
        self.num_done = num_done
        self.now = now
        self._countdown -= 1
        if self._countdown:
            return
        self._countdown = self.check_every
        tick = self.clock()
        if tick < self._due:
            return
        self._due = tick + (BAR_REFRESH_S if self.mode is ProgressMode.BAR else self.interval_s)
        self._show(tick)

    def finish(self) -> None:
        """The final state, if anything was shown (a run shorter than the first interval stays silent)."""
        if not self.num_shown:
            return
        elapsed = self.clock() - self.started
        finished = f"finished in {format_duration(elapsed)}:"
        if self.mode is ProgressMode.BAR:
            self._draw(f"{self._bar_prefix()}{self._bar(1.0)} {finished} {self._numbers(elapsed, 'done')}")
            self.stream.write("\n")
        else:
            self.stream.write(f"{self._prefix()}{finished} {self._numbers(elapsed, 'requests done')}\n")
        self.stream.flush()

    def abandon(self) -> None:
        """The run stopped early: end the bar's line so that the next message starts on its own."""
        if self.num_shown and self.mode is ProgressMode.BAR:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0

    def note(self, text: str) -> None:
        """A line of its own (a failure, say): the bar's line is ended first and drawn again below it."""
        self.abandon()
        self.stream.write(text + "\n")
        self.stream.flush()

    def _show(self, tick: float) -> None:
        elapsed = tick - self.started
        share = self.extent.fraction(self.num_done, self.now)
        eta = f"eta {format_duration(elapsed * (1 - share) / share)}" if share > 0 else "eta ?"
        if self.mode is ProgressMode.BAR:
            # eta first: a narrow terminal cuts the line's end
            self._draw(f"{self._bar_prefix()}{self._bar(share)} {share:.1%} {eta}, {self._numbers(elapsed, 'done')}")
        else:
            self.stream.write(f"{self._prefix()}{share:.1%} {self._numbers(elapsed, 'requests done')}, {eta}\n")
        self.stream.flush()
        self.num_shown += 1

    def _prefix(self) -> str:
        return f"progress ({self.label}): " if self.label else "progress: "

    def _bar_prefix(self) -> str:
        return f"{self.label}: " if self.label else ""

    def _numbers(self, elapsed: float, done: str) -> str:
        """Simulated time, requests done and requests per wall second (a sweep: points, time a point)."""
        return f"{self.extent.describe(self.num_done, self.now, done)}, {self.extent.rate(self.num_done, elapsed)}"

    @staticmethod
    def _bar(share: float) -> str:
        filled = math.floor(share * BAR_WIDTH)
        return "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]"

    def _draw(self, line: str) -> None:
        """Redraw the bar's line in place, cut to the terminal's width."""
        line = line[: shutil.get_terminal_size((100, 24)).columns - 1]
        self.stream.write("\r" + line.ljust(self._width))
        self._width = len(line)


@dataclass(frozen=True)
class ProgressOptions:
    """How a command shows progress, chosen once from its flags and its stderr."""

    mode: ProgressMode = ProgressMode.OFF
    interval_s: float = DEFAULT_INTERVAL_S
    stream: TextIO | None = None
    """Where progress goes (None: sys.stderr at the time of each run)."""

    @contextmanager
    def reporter(self, extent: RunExtent, label: str = "") -> Iterator[ProgressCallback | None]:
        """The callback for one simulation (None when progress is off); the final line on success."""
        if self.mode is ProgressMode.OFF:
            yield None
            return
        reporter = ProgressReporter(extent, self.mode, self.stream or sys.stderr, label, self.interval_s)
        try:
            yield reporter
        except BaseException:
            reporter.abandon()
            raise
        reporter.finish()


QUIET = ProgressOptions()


def progress_options(quiet: bool, interval_s: float = DEFAULT_INTERVAL_S, stream: TextIO | None = None
                     ) -> ProgressOptions:
    """Off with `quiet`; else a bar when the stream (default stderr) is a terminal, lines when it is not."""
    if quiet:
        return QUIET
    shown = stream or sys.stderr
    mode = ProgressMode.BAR if shown.isatty() else ProgressMode.LINES
    return ProgressOptions(mode, interval_s, stream)


def add_progress_flags(command: argparse.ArgumentParser) -> None:
    """`--quiet` (alias `--no-progress`) and `--progress-interval`, for a command that simulates."""
    command.add_argument("-q", "--quiet", "--no-progress", dest="quiet", action="store_true",
                         help="no progress bar (terminal) and no progress lines (pipe or log) on stderr")
    command.add_argument("--progress-interval", type=float, default=DEFAULT_INTERVAL_S, metavar="SECONDS",
                         help=f"wall seconds between progress lines when stderr is not a terminal "
                              f"(default {DEFAULT_INTERVAL_S:g})")


def options_from_args(args: argparse.Namespace) -> ProgressOptions:
    """The options of a command's flags; a command asks for them before it does any work."""
    interval_s = args.progress_interval
    if not (math.isfinite(interval_s) and interval_s > 0):
        raise UserInputError(f"--progress-interval: expected the wall seconds between two progress lines, a number "
                             f"> 0, e.g. --progress-interval 30; got {interval_s}")
    return progress_options(args.quiet, interval_s)


def run_with_heartbeat(env: simpy.Environment, beat: Callable[[], None], every: int = EVENTS_PER_BEAT) -> None:
    """`env.run()` to the end, calling `beat()` every `every` events.

    Stepping the same events in the same order, it changes nothing the simulation computes.
    """
    step = env.step
    try:
        while True:
            for _ in range(every):
                step()
            beat()
    except simpy.core.EmptySchedule:
        return
