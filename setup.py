"""The build: pure Python by default; with SERVESIM_COMPILE=1 the engine's hot modules are compiled
with mypyc (README, "Compiled engine"). The compiled modules compute the same numbers as their
Python source (the same float operations in the same order); they only skip the interpreter.

Compiling type-checks the modules with the project's mypy configuration, so it needs the project's
dependencies and the `compile` extra installed beside it, and a C compiler:

    pip install -e '.[compile]' && SERVESIM_COMPILE=1 pip install --no-build-isolation --no-deps .
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup

COMPILED_MODULES = (
    "sim/engine/bookkeeping.py",
    "sim/engine/iteration.py",
    "sim/engine/kv_memory.py",
    "sim/engine/prefix_cache.py",
    "sim/engine/prompt_chunks.py",
    "sim/engine/replica.py",
    "sim/engine/request.py",
    "sim/engine/stretch.py",
    "sim/engine/trusted.py",
    "sim/reporting/gap_store.py",
    "sim/reporting/request_records.py",
    "sim/reporting/request_rows.py",
    "sim/reporting/spill.py",
    "policies/views.py",
)
"""The modules a run spends its time in (each step's bookkeeping, the fast-forward, the KV pool,
the per-step records); the rest stays interpreted. `sim/reporting/metrics.py` does too: its recorder
is weakly referenced (its spill folder goes with it), which a compiled class cannot be."""

TYPECHECK_ROOT = Path("build/typecheck")
"""Where `.ci/lint` links each folder under its installed name, servesim.<folder> (pyproject.toml's mypy_path)."""


def remove_stale_builds() -> None:
    """setuptools packs whatever its build folder holds: compiled modules left there by an earlier
    compiled build would go into a later pure one (or outlive a module taken off the list)."""
    for build_lib in Path("build").glob("lib.*"):
        for stale in [*build_lib.glob("*__mypyc.*"), *build_lib.glob("servesim/**/*.so"),
                      *build_lib.glob("servesim/**/*.pyd")]:
            stale.unlink()


def compiled_extensions() -> list:
    """The compiled modules, when asked for and a wheel is being built (the metadata step runs this
    file too, and needs none: compiling takes most of a build's minute or two)."""
    if os.environ.get("SERVESIM_COMPILE") != "1" or {"egg_info", "dist_info"} & set(sys.argv):
        return []
    if {"editable_wheel", "develop", "--inplace"} & set(sys.argv):
        raise SystemExit("SERVESIM_COMPILE=1 needs a regular install (pip install --no-build-isolation --no-deps .): "
                         "in an editable one the compiled modules would shadow later edits of their sources")
    from mypyc.build import mypycify

    package_root = TYPECHECK_ROOT / "servesim"
    package_root.mkdir(parents=True, exist_ok=True)
    for folder in ("sim", "policies", "hwmodels", "traces", "profiler"):
        link = package_root / folder
        if not link.is_symlink():
            link.symlink_to(Path("../../..") / folder, target_is_directory=True)
    return mypycify(["--explicit-package-bases", *(str(package_root / path) for path in COMPILED_MODULES)])


remove_stale_builds()
setup(ext_modules=compiled_extensions())
