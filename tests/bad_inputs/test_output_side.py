"""Bad and extreme output targets: each is refused before simulating, in one paragraph, touching nothing.

Grouped by kind: the path given (-o, output.dir), the names used as directory names (name:,
variants), what already exists at the target, `simrun validate`, and I/O errors while writing.
Interruptions, the lock and crash recovery are in tests/sim/test_output_dir.py.
"""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import yaml

from servesim.sim.reporting import output_dir, results
from servesim.sim.reporting.output_target import MARKER
from tests.bad_inputs.harness import assert_user_error, simrun_in_process, tree

SMALL = {
    "name": "small",
    "model": "llama-3.1-8b",
    "hardware": "h100-sxm",
    "workload": {
        "arrival": {"process": "poisson", "rate": 5.0},
        "prompt_tokens": {"dist": "uniform", "min": 50, "max": 200},
        "output_tokens": {"dist": "uniform", "min": 5, "max": 20},
        "num_requests": 20,
    },
    "output": {"plots": False},
}


def write_config(directory: Path, data: dict | None = None) -> Path:
    path = directory / "exp.yaml"
    path.write_text(yaml.safe_dump(data or SMALL))
    return path


def everything(directory: Path) -> dict[str, bytes | str]:
    """Every entry under `directory` (files with bytes, links and folders by kind): to show nothing changed."""
    found: dict[str, bytes | str] = {}
    for path in sorted(directory.rglob("*")):
        key = str(path.relative_to(directory))
        found[key] = "link" if path.is_symlink() else path.read_bytes() if path.is_file() else "dir"
    return found


def refused(tmp_path: Path, capsys, args: list[str], *fragments: str, config: dict | None = None) -> None:
    """`simrun run` with `args` fails with one paragraph naming `fragments` and changes nothing in tmp_path."""
    path = write_config(tmp_path, config)
    before = everything(tmp_path)
    assert_user_error(simrun_in_process(["run", str(path), *args], capsys), *fragments)
    assert everything(tmp_path) == before


# --- the path given with -o --------------------------------------------------------------------

@pytest.mark.parametrize("output, fragment", [
    ("", "is empty"),
    (".", "names a directory by . or .."),
    ("./", "names a directory by . or .."),
    ("..", "names a directory by . or .."),
    ("sub/..", "names a directory by . or .."),
    ("/", "names the filesystem root"),
    ("out\tput", "control character"),
    ("out\n", "control character"),
    (".servesim-3f2a.staging-abcd1234", "are servesim's own"),
])
def test_output_naming_no_directory_of_its_own_is_refused(tmp_path, capsys, monkeypatch, output, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "keep.txt").write_text("user data")
    refused(tmp_path, capsys, ["-o", output], fragment)


def test_an_existing_file_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("user data")
    refused(tmp_path, capsys, ["-o", str(tmp_path / "notes.txt")], "is an existing file")


@pytest.mark.parametrize("below", ["out", "a/b/out"])
def test_a_path_under_a_file_is_refused(tmp_path, capsys, below):
    (tmp_path / "notes.txt").write_text("user data")
    refused(tmp_path, capsys, ["-o", str(tmp_path / "notes.txt" / below)], "which is a file")


def test_a_device_file_is_refused(tmp_path, capsys):
    refused(tmp_path, capsys, ["-o", os.devnull], "not a directory")


@pytest.mark.parametrize("points_to", ["elsewhere", "missing", "results"])
def test_a_symbolic_link_is_refused_whatever_it_points_to(tmp_path, capsys, points_to):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "keep.txt").write_text("user data")
    if points_to == "results":
        made = simrun_in_process(["run", str(write_config(tmp_path)), "-o", str(tmp_path / "results")], capsys)
        assert made.code == 0
    (tmp_path / "link").symlink_to(tmp_path / points_to)
    refused(tmp_path, capsys, ["-o", str(tmp_path / "link")], "is a symbolic link", "give the real directory")


def test_a_mount_point_is_refused(tmp_path, capsys, monkeypatch):
    """Say, a container volume: it cannot be renamed, so the swap would fail after the simulation."""
    (tmp_path / "volume").mkdir()
    real_ismount = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda path: Path(path).name == "volume" or real_ismount(path))
    refused(tmp_path, capsys, ["-o", str(tmp_path / "volume")], "is a mount point", "volume/results")


def test_a_symbolic_link_loop_in_the_parent_is_refused(tmp_path, capsys):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    refused(tmp_path, capsys, ["-o", str(tmp_path / "loop" / "out")], "symbolic link loop")


def test_a_name_longer_than_the_filesystem_allows_is_refused(tmp_path, capsys):
    refused(tmp_path, capsys, ["-o", str(tmp_path / ("r" * 300))], "bytes long", "limit of 255")


def test_a_path_longer_than_the_filesystem_allows_is_refused(tmp_path, capsys):
    deep = tmp_path.joinpath(*["d" * 200] * 25)
    refused(tmp_path, capsys, ["-o", str(deep)], "too long for this filesystem")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only (mode 555) directory")
def test_an_unwritable_parent_is_refused_before_simulating(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    refused(tmp_path, capsys, ["-o", str(locked / "out")], "is not writable by this user")


def test_a_parent_the_user_may_not_write_is_refused(tmp_path, capsys, monkeypatch):
    """The permission check itself, also where the tests run as root (who may write anywhere)."""
    (tmp_path / "locked").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path).name != "locked" and real_access(path, mode))
    refused(tmp_path, capsys, ["-o", str(tmp_path / "locked" / "deeper" / "out")], "locked is not writable")


def test_output_dir_from_the_config_is_checked_like_dash_o(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("user data")
    for value, fragment in ((".", "names a directory by"), ("", "is empty"), ("a\0b", "NUL byte")):
        refused(tmp_path, capsys, [], fragment, config={**SMALL, "output": {"plots": False, "dir": value}})


# --- names used as directory names ---------------------------------------------------------------

@pytest.mark.parametrize("name, fragment", [
    ("a/b", "contains '/'"),
    ("..", "is not a directory name"),
    (".", "is not a directory name"),
    ("", "is empty"),
    ("x" * 300, "bytes long"),
    ("two\nlines", "control character"),
    (".servesim-results", "starts with '.servesim-'"),
])
def test_an_experiment_name_that_is_no_directory_name_is_refused(tmp_path, capsys, monkeypatch, name, fragment):
    monkeypatch.chdir(tmp_path)
    refused(tmp_path, capsys, [], "experiment name:", fragment, config={**SMALL, "name": name})


def test_an_odd_experiment_name_is_fine_when_o_says_where(tmp_path, capsys):
    config = write_config(tmp_path, {**SMALL, "name": "a/b"})
    assert simrun_in_process(["run", str(config), "-o", str(tmp_path / "out")], capsys).code == 0


@pytest.mark.parametrize("names, fragment", [
    (["ok", "a/b"], "contains '/'"),
    (["ok", ".."], "is not a directory name"),
    (["ok", "comparison.json"], "is reserved"),
    (["ok", MARKER], "starts with '.servesim-'"),
    (["Fast", "fast"], "differ only in case"),
])
def test_variant_names_that_are_no_directory_names_are_refused(tmp_path, capsys, names, fragment):
    config = {**SMALL, "variants": {name: {"seed": i} for i, name in enumerate(names)}}
    refused(tmp_path, capsys, ["-o", str(tmp_path / "out")], fragment, config=config)


# --- what is already there -----------------------------------------------------------------------

def test_a_directory_servesim_did_not_write_is_never_replaced(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    refused(tmp_path, capsys, ["-o", str(tmp_path / "mine")], "not a servesim results directory", "never deletes")


def test_results_with_a_users_file_added_are_not_replaced(tmp_path, capsys):
    config = write_config(tmp_path)
    out = tmp_path / "out"
    assert simrun_in_process(["run", str(config), "-o", str(out)], capsys).code == 0
    (out / "notes.md").write_text("my analysis")
    (out / "extra").mkdir()
    refused(tmp_path, capsys, ["-o", str(out)], "files servesim did not write", "notes.md", "extra")


@pytest.mark.parametrize("marker", ["{not json", json.dumps({"format": "servesim-results", "complete": False}),
                                    json.dumps(["a list"])])
def test_a_damaged_or_incomplete_marker_does_not_count_as_results(tmp_path, capsys, marker):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / MARKER).write_text(marker)
    (tmp_path / "out" / "data.csv").write_text("1,2\n")
    refused(tmp_path, capsys, ["-o", str(tmp_path / "out")], "not a servesim results directory")


def test_no_overwrite_refuses_earlier_results(tmp_path, capsys):
    config = write_config(tmp_path)
    assert simrun_in_process(["run", str(config), "-o", str(tmp_path / "out")], capsys).code == 0
    refused(tmp_path, capsys, ["-o", str(tmp_path / "out"), "--no-overwrite"], "--no-overwrite")


def test_a_target_inside_a_results_directory_is_refused(tmp_path, capsys):
    config = write_config(tmp_path)
    assert simrun_in_process(["run", str(config), "-o", str(tmp_path / "out")], capsys).code == 0
    refused(tmp_path, capsys, ["-o", str(tmp_path / "out" / "nested" / "run")], "is inside the servesim results")


def test_a_variant_subdirectory_is_not_a_results_directory_of_its_own(tmp_path, capsys):
    config = write_config(tmp_path, {**SMALL, "variants": {"a": {"seed": 1}, "b": {"seed": 2}}})
    assert simrun_in_process(["run", str(config), "-o", str(tmp_path / "out")], capsys).code == 0
    refused(tmp_path, capsys, ["-o", str(tmp_path / "out" / "a")], "is inside the servesim results")


# --- simrun validate -----------------------------------------------------------------------------

def test_validate_reports_the_output_side(tmp_path, capsys):
    config = write_config(tmp_path)
    (tmp_path / "notes.txt").write_text("user data")
    outcome = simrun_in_process(["validate", str(config), "-o", str(tmp_path / "notes.txt")], capsys)
    assert_user_error(outcome, "is an existing file")
    named = write_config(tmp_path, {**SMALL, "name": "a/b"})
    assert_user_error(simrun_in_process(["validate", str(named)], capsys), "experiment name:", "contains '/'")


def test_validate_names_where_results_go_when_all_is_well(tmp_path, capsys):
    outcome = simrun_in_process(["validate", str(write_config(tmp_path)), "-o", str(tmp_path / "out")], capsys)
    assert outcome.code == 0 and f"results to {tmp_path / 'out'}" in outcome.stdout
    assert not (tmp_path / "out").exists()


# --- I/O errors while writing --------------------------------------------------------------------

def _fail_with(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


@pytest.mark.parametrize("code, fragment", [(errno.ENOSPC, "free some space"), (errno.EIO, "input/output error"),
                                            (errno.EDQUOT, "quota")])
def test_an_io_error_mid_write_keeps_the_old_results(tmp_path, capsys, monkeypatch, code, fragment):
    config = write_config(tmp_path)
    out = tmp_path / "out"
    assert simrun_in_process(["run", str(config), "-o", str(out)], capsys).code == 0
    before = everything(tmp_path)
    monkeypatch.setattr(results, "copyfile", _fail_with(code))  # the run's tables are copied in from its spill
    outcome = simrun_in_process(["run", str(config), "-o", str(out), "--seed", "9"], capsys)
    assert_user_error(outcome, fragment, "untouched")
    assert everything(tmp_path) == before


def test_an_io_error_in_the_swap_keeps_the_old_results(tmp_path, capsys, monkeypatch):
    config = write_config(tmp_path)
    out = tmp_path / "out"
    assert simrun_in_process(["run", str(config), "-o", str(out)], capsys).code == 0
    before = everything(tmp_path)
    monkeypatch.setattr(output_dir, "_renameat2", _fail_with(errno.EIO))
    assert_user_error(simrun_in_process(["run", str(config), "-o", str(out), "--seed", "9"], capsys), "untouched")
    assert everything(tmp_path) == before


def test_a_filesystem_without_locks_is_one_paragraph(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(output_dir.fcntl, "flock", _fail_with(errno.ENOLCK))
    refused(tmp_path, capsys, ["-o", str(tmp_path / "out")], "may not support file locks")


def test_an_io_error_writing_plots_is_one_paragraph(tmp_path, capsys, monkeypatch):
    import matplotlib.figure

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", _fail_with(errno.EIO))
    config = write_config(tmp_path, {**SMALL, "output": {"plots": True}})
    assert_user_error(simrun_in_process(["run", str(config), "-o", str(tmp_path / "out")], capsys), "untouched")
    assert tree(tmp_path / "out") == {} and [p.name for p in tmp_path.iterdir()] == ["exp.yaml"]


# --- simrun fidelity -----------------------------------------------------------------------------

@pytest.mark.parametrize("output, fragment", [(".", "names a directory by"), ("mine", "not a servesim results")])
def test_fidelity_checks_its_report_directory_first(tmp_path, capsys, monkeypatch, output, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("user data")
    before = everything(tmp_path)
    assert_user_error(simrun_in_process(["fidelity", "missing.yaml", "-o", output], capsys), fragment)
    assert everything(tmp_path) == before


# --- spellings that mean something else than they look ------------------------------------------

def test_a_tilde_in_output_dir_means_the_home_directory_not_a_folder_named_tilde(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = write_config(tmp_path, {**SMALL, "output": {"plots": False, "dir": "~/res"}})
    assert simrun_in_process(["run", str(config)], capsys).code == 0
    assert (tmp_path / "home" / "res" / MARKER).is_file() and not (tmp_path / "~").exists()


def test_a_trailing_slash_names_the_same_directory(tmp_path, capsys):
    config = write_config(tmp_path)
    for _ in range(2):
        assert simrun_in_process(["run", str(config), "-o", f"{tmp_path / 'out'}/"], capsys).code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml", "out"]


# --- simrun profile ------------------------------------------------------------------------------

@pytest.mark.parametrize("make, fragment", [("file", "is not a directory"), ("under", "which is a file")])
def test_profile_checks_its_tables_directory_before_timing(tmp_path, capsys, make, fragment):
    (tmp_path / "notes.txt").write_text("user data")
    output = tmp_path / "notes.txt" / ("x" if make == "under" else "")
    before = everything(tmp_path)
    args = ["profile", "--model", "llama-3.1-8b", "--device", "cpu", "-o", str(output).rstrip("/")]
    assert_user_error(simrun_in_process(args, capsys), fragment)
    assert everything(tmp_path) == before
