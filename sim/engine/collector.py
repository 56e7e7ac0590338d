"""The garbage collector's settings while a run is simulated.

A run allocates mostly short-lived objects, some in reference cycles (a request and its
read-only view), and keeps a large, long-lived heap it was given (imported modules, the
config, the prepared workload). With CPython's defaults a young collection runs every 700
allocations and a full one now and then walks that whole heap: about a tenth of `bench_core`'s
time (0.25 s, 0.2 s of it in two full collections). Freezing what exists before the run keeps
full collections off it, and collecting the young generation every 10,000 allocations still
frees the cycles within a few milliseconds of simulation (0.05 s in all). Both are undone after.
"""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 10_000
"""Allocations between two collections of the young generation during a run (CPython: 700)."""


@contextmanager
def simulation_collector() -> Iterator[None]:
    """Freeze the heap as it is (unless the caller froze it already) and collect the young
    generation less often; restore the thresholds, and unfreeze what was frozen here, after."""
    thresholds = gc.get_threshold()
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if freeze:
            gc.unfreeze()
