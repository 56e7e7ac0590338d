"""The results directory's safety: replace, marker, lock, crash recovery, and signals at every instant.

Signals are sent to real `simrun` processes paused at an exact instant by tests/sim/output_driver.py
(no sleeps, no hooks in the production code). After each, the target must hold the old or the new
complete results, and after the next run no leftover may remain.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.sim.cli import main
from servesim.sim.reporting import output_dir, results
from servesim.sim.reporting.output_dir import claim_output
from servesim.sim.reporting.output_target import (
    MARKER,
    OutputError,
    check_directory_name,
    foreign_entries,
    read_manifest,
    resolve_target,
)
from tests.bad_inputs.test_output_side import SMALL

DRIVER = Path(__file__).with_name("output_driver.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    return path


def run(config: Path, out: Path, seed: int, capsys, *extra: str) -> int:
    code = main(["run", str(config), "-o", str(out), "--seed", str(seed), *extra])
    capsys.readouterr()
    return code


def seed_of(out: Path) -> int:
    """Which run's results `out` holds; asserts they are complete (marker and every listed file)."""
    manifest = read_manifest(out)
    assert manifest is not None, sorted(p.name for p in out.iterdir())
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != MARKER} == manifest
    return yaml.safe_load((out / "config.yaml").read_text())["seed"]


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".servesim-"))


# --- replacing, the marker and the default directory ---------------------------------------------

def test_a_second_run_replaces_the_first_and_leaves_nothing_beside_it(tmp_path, config, capsys):
    out = tmp_path / "out"
    assert run(config, out, 1, capsys) == 0 and seed_of(out) == 1
    assert run(config, out, 2, capsys) == 0 and seed_of(out) == 2
    assert leftovers(tmp_path) == []


def test_the_marker_lists_what_was_written(tmp_path, config, capsys):
    out = tmp_path / "out"
    assert run(config, out, 1, capsys) == 0
    marker = json.loads((out / MARKER).read_text())
    assert marker["format"] == "servesim-results" and marker["kind"] == "run" and marker["complete"] is True
    assert set(marker["files"]) == {"config.yaml", "summary.json", "requests.parquet", "replica_series.parquet",
                                    "system_series.parquet", "benchmark_serving.json"}
    assert len(marker["config_sha256"]) == 64


def test_the_directory_gets_the_usual_permissions_not_the_staging_ones(tmp_path, config, capsys):
    old = os.umask(0o022)
    try:
        assert run(config, tmp_path / "out", 1, capsys) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


def test_the_quickstart_command_works_twice(tmp_path, config, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["run", str(config)]) == 0
    assert seed_of(tmp_path / "results" / "small") == 0 and leftovers(tmp_path / "results") == []


def test_an_empty_directory_is_filled(tmp_path, config, capsys):
    (tmp_path / "out").mkdir()
    assert run(config, tmp_path / "out", 1, capsys, "--no-overwrite") == 0 and seed_of(tmp_path / "out") == 1


def test_variants_and_single_runs_replace_each_other(tmp_path, config, capsys):
    variants = tmp_path / "variants.yaml"
    variants.write_text(yaml.safe_dump({**SMALL, "variants": {"a": {"seed": 1}, "b": {"seed": 2}}}))
    out = tmp_path / "out"
    assert main(["run", str(variants), "-o", str(out)]) == 0
    assert read_manifest(out) >= {"a/summary.json", "b/summary.json", "comparison.json"}
    assert run(config, out, 3, capsys) == 0 and seed_of(out) == 3
    assert main(["run", str(variants), "-o", str(out)]) == 0 and not (out / "summary.json").exists()
    assert leftovers(tmp_path) == []


def test_the_rename_aside_fallback_replaces_too(tmp_path, config, capsys, monkeypatch):
    out = tmp_path / "out"
    assert run(config, out, 1, capsys) == 0
    monkeypatch.setattr(output_dir, "_renameat2", lambda *args: False)
    assert run(config, out, 2, capsys) == 0 and seed_of(out) == 2 and leftovers(tmp_path) == []


@pytest.mark.parametrize("fallback", [False, True])
@pytest.mark.parametrize("existing", ["results", "empty", "absent"])
def test_files_a_user_adds_to_the_target_during_the_run_are_never_deleted(
        tmp_path, config, capsys, monkeypatch, fallback, existing):
    out = tmp_path / "out"
    if existing == "results":
        assert run(config, out, 1, capsys) == 0
    elif existing == "empty":
        out.mkdir()
    real_write = results.write_run_files

    def write_while_the_user_saves_a_file(*args, **kwargs):
        real_write(*args, **kwargs)
        out.mkdir(exist_ok=True)
        (out / "notes.md").write_text("saved meanwhile")

    monkeypatch.setattr(results, "write_run_files", write_while_the_user_saves_a_file)
    if fallback:
        monkeypatch.setattr(output_dir, "_renameat2", lambda *args: False)
    code = main(["run", str(config), "-o", str(out), "--seed", "2"])
    assert code == 2 and "nothing was replaced" in capsys.readouterr().err.lower()
    assert (out / "notes.md").read_text() == "saved meanwhile" and leftovers(tmp_path) == []
    if existing == "results":
        assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 1


# --- the next run cleans up only what is provably its own ----------------------------------------

def test_only_marked_leftovers_of_the_same_target_are_removed(tmp_path, config, capsys):
    out = tmp_path / "out"
    prefix = output_dir.leftover_prefix("out")
    marked = tmp_path / f"{prefix}staging-abcd1234"
    marked.mkdir()
    (marked / MARKER).write_text("{}")
    (marked / "half.parquet").write_text("x")
    unmarked = tmp_path / f"{prefix}staging-zzzz9999"
    unmarked.mkdir()
    (unmarked / "user.txt").write_text("not servesim's")
    other = tmp_path / f"{output_dir.leftover_prefix('other')}staging-abcd1234"
    other.mkdir()
    (other / MARKER).write_text("{}")
    assert run(config, out, 1, capsys) == 0
    assert not marked.exists() and (unmarked / "user.txt").exists() and (other / MARKER).exists()


def test_a_target_lost_between_the_fallbacks_two_renames_is_restored(tmp_path, config, capsys):
    out = tmp_path / "out"
    assert run(config, out, 1, capsys) == 0
    aside = tmp_path / f"{output_dir.leftover_prefix('out')}old-abcd1234"
    out.rename(aside)
    with claim_output(resolve_target(out)) as claim:
        assert seed_of(out) == 1 and claim.target.path == out
    assert leftovers(tmp_path) == []


# --- the lock ------------------------------------------------------------------------------------

def start(instant: str, args: list[str], fallback: bool = False) -> subprocess.Popen:
    command = [sys.executable, str(DRIVER), instant, *(["--no-exchange"] if fallback else []), *args, "--no-progress"]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=ROOT)
    line = process.stdout.readline()
    assert line == "paused\n", (line, process.stderr.read() if process.poll() is not None else "")
    return process


def finish(process: subprocess.Popen, sig: int | None = None) -> tuple[int, str]:
    if sig is not None:
        process.send_signal(sig)
    try:
        process.stdin.write("go\n")
        process.stdin.flush()
    except BrokenPipeError:
        pass
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


def test_a_second_run_into_the_same_directory_fails_at_once(tmp_path, config, capsys):
    out = tmp_path / "out"
    assert run(config, out, 1, capsys) == 0
    first = start("simulate", ["run", str(config), "-o", str(out), "--seed", "2"])
    try:
        assert main(["run", str(config), "-o", str(out), "--seed", "3"]) == 2
        message = capsys.readouterr().err
        assert f"another simrun (pid {first.pid}) is writing" in message and "Traceback" not in message
        assert run(config, tmp_path / "elsewhere", 4, capsys) == 0  # other targets are not held up
    finally:
        code, stderr = finish(first)
    assert code == 0, stderr
    assert seed_of(out) == 2 and leftovers(tmp_path) == []


def test_racing_runs_each_succeed_with_their_results_or_fail_on_the_lock(tmp_path, config):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "servesim.sim.cli", "run", str(config), "-o", str(out), "--no-progress", "--seed"]
    racers = [subprocess.Popen([*command, str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for seed in (1, 2, 3)]
    outcomes = [(seed, racer.wait(timeout=300), racer.stderr.read())
                for seed, racer in zip((1, 2, 3), racers, strict=True)]
    for racer in racers:
        racer.stdout.close(), racer.stderr.close()
    winners = [seed for seed, code, _ in outcomes if code == 0]
    assert winners and seed_of(out) in winners and leftovers(tmp_path) == []
    assert all("is writing output directory" in stderr for _, code, stderr in outcomes if code != 0)


# --- signals at the dangerous instants -----------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("instant", ["simulate", "writing"])
def test_an_interrupt_before_the_swap_keeps_the_old_results_and_cleans_up(tmp_path, config, capsys, sig, instant):
    out = tmp_path / "out"
    assert run(config, out, 1, capsys) == 0
    code, stderr = finish(start(instant, ["run", str(config), "-o", str(out), "--seed", "2"]), sig)
    assert code == 128 + sig and "Traceback" not in stderr and "no results written" in stderr
    assert seed_of(out) == 1 and leftovers(tmp_path) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_during_the_swap_waits_and_says_the_results_are_in(tmp_path, config, capsys, sig):
    out = tmp_path / "out"
    assert run(config, out, 1, capsys) == 0
    code, stderr = finish(start("swap", ["run", str(config), "-o", str(out), "--seed", "2"]), sig)
    assert code == 128 + sig and "Traceback" not in stderr and "already in place" in stderr
    assert seed_of(out) == 2 and leftovers(tmp_path) == []


@pytest.mark.parametrize("instant, fallback, visible", [
    ("simulate", False, 1), ("writing", False, 1), ("swap", False, 1), ("swapped", False, 2), ("removing", False, 2),
    ("swapped", True, 2), ("aside", True, None),
])
def test_a_kill_at_any_instant_leaves_complete_results_and_the_next_run_cleans_up(
        tmp_path, config, capsys, instant, fallback, visible):
    out = tmp_path / "out"
    assert run(config, out, 1, capsys) == 0
    code, _ = finish(start(instant, ["run", str(config), "-o", str(out), "--seed", "2"], fallback), signal.SIGKILL)
    assert code == -signal.SIGKILL
    if visible is None:  # between the fallback's two renames: the old results wait aside, complete
        with claim_output(resolve_target(out)):
            assert seed_of(out) == 1
    else:
        assert seed_of(out) == visible
    assert run(config, out, 3, capsys) == 0 and seed_of(out) == 3 and leftovers(tmp_path) == []


def test_a_variants_run_interrupted_keeps_the_old_results(tmp_path, capsys):
    variants = tmp_path / "variants.yaml"
    variants.write_text(yaml.safe_dump({**SMALL, "variants": {"a": {"seed": 1}, "b": {"seed": 2}}}))
    out = tmp_path / "out"
    assert main(["run", str(variants), "-o", str(out)]) == 0
    before = read_manifest(out), (out / "comparison.json").read_bytes()
    code, stderr = finish(start("writing", ["run", str(variants), "-o", str(out)]), signal.SIGTERM)
    assert code == 128 + signal.SIGTERM and "Traceback" not in stderr
    assert (read_manifest(out), (out / "comparison.json").read_bytes()) == before and leftovers(tmp_path) == []


# --- properties ----------------------------------------------------------------------------------

@settings(max_examples=200)
@given(st.text(max_size=300))
def test_an_accepted_name_is_exactly_one_new_directory(name):
    try:
        check_directory_name(name, "name")
    except OutputError:
        return
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / name).mkdir()
        assert os.listdir(scratch) == [name]


paths = st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=3).map("/".join)


@settings(max_examples=100)
@given(st.sets(paths, max_size=6), st.sets(paths, max_size=6))
def test_foreign_entries_are_exactly_what_the_manifest_does_not_cover(listed, extra):
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        created = set()
        for relative in sorted(listed | extra):
            path = root / relative
            if any(p.is_file() for p in path.parents) or path.is_dir():
                continue  # a path under a file, or a folder already holding others: cannot be a file here
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
            created.add(relative)
        manifest = frozenset(created & listed)
        entries = created | {p.as_posix() for f in created for p in Path(f).parents if p != Path(".")}
        covered = manifest | {p.as_posix() for f in manifest for p in Path(f).parents}
        expected = {e for e in entries - covered if all(p.as_posix() in covered for p in Path(e).parents[:-1])}
        assert set(foreign_entries(root, manifest)) == expected
