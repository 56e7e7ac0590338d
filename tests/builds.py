"""Which build of the engine the tests run against (setup.py): interpreted, or compiled with mypyc.

CI runs the engine's tests on both (`.ci/run`). A compiled module calls the functions of the others directly,
so a test that patches one to watch or steer the engine only works on the interpreted build."""
import pytest

from servesim.sim.engine import engine_build

COMPILED = engine_build() == "compiled"

interpreted_only = pytest.mark.skipif(
    COMPILED, reason="patches an engine function, which compiled callers do not look up: the interpreted build runs it")
compiled_only = pytest.mark.skipif(
    not COMPILED, reason="compares a compiled build with its sources: CI's compiled build runs it (.ci/run)")
