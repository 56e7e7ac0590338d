"""Runs `simrun` paused at one instant of writing its results, so a test can signal it exactly there.

    python output_driver.py INSTANT [--no-exchange] SIMRUN-ARGS...

At INSTANT it prints `paused` on stdout and waits for a line on stdin before going on; the test
sends its signal in between. `--no-exchange` makes the atomic exchange look unsupported, to drive
the rename-aside fallback. The production code has no hooks: this script wraps its functions.
"""
from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from servesim.sim import runner
from servesim.sim.cli import main
from servesim.sim.reporting import output_dir, results


def pause() -> None:
    print("paused", flush=True)
    sys.stdin.readline()


def wrap(module: Any, name: str, *, before: Callable[..., bool] | None = None,
         after: Callable[..., bool] | None = None, once: bool = True) -> None:
    """Pause before (or after) `module.name` runs on the first call whose arguments satisfy the test."""
    original = getattr(module, name)
    state = {"done": False}

    @functools.wraps(original)
    def paused(*args: Any, **kwargs: Any) -> Any:
        if before is not None and not state["done"] and before(*args, **kwargs):
            state["done"] = once
            pause()
        value = original(*args, **kwargs)
        if after is not None and not state["done"] and after(*args, **kwargs):
            state["done"] = once
            pause()
        return value

    setattr(module, name, paused)


INSTANTS: dict[str, Callable[[], None]] = {
    # the lock is held, nothing written yet
    "simulate": lambda: wrap(runner, "simulate", before=lambda *a, **k: True),
    # every file is in the staging directory, its marker still says incomplete
    "writing": lambda: wrap(results, "write_run_files", after=lambda *a, **k: True),
    # the staging directory is complete and about to be exchanged with the old results
    "swap": lambda: wrap(output_dir, "_renameat2", before=lambda s, d, flags: flags == output_dir.RENAME_EXCHANGE),
    # the new results are in place; the old ones wait under the staging name
    "swapped": lambda: wrap(output_dir, "remove_results_dir", before=lambda path: path.name.startswith(".servesim-")),
    # the old results are half removed
    "removing": lambda: wrap(os, "unlink", after=lambda path, *a, **k: ".servesim-" in str(path)),
    # fallback only: the old results are renamed aside, the new ones not yet in
    "aside": lambda: wrap(os, "rename", after=lambda source, destination: ".old-" in str(destination)),
}


if __name__ == "__main__":
    instant, *args = sys.argv[1:]
    if args and args[0] == "--no-exchange":
        args = args[1:]
        output_dir._renameat2 = lambda *a: False
    INSTANTS[instant]()
    sys.exit(main(args))
