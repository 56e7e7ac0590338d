"""Running `simrun` on bad input and checking that it fails the way the README promises.

The promise: bad input exits with code 2, prints one paragraph that starts with `simrun: error:`,
shows no traceback, and writes nothing.
"""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from servesim.sim.cli import main

EXIT_USER_ERROR = 2


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def simrun_in_process(args: list[str], capsys) -> Outcome:
    """Run `simrun` in this interpreter (fast); `capsys` is pytest's fixture."""
    code = main(args)
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def simrun_subprocess(args: list[str], cwd: Path | None = None, timeout: float = 120) -> Outcome:
    """Run `simrun` in a new interpreter: for hangs, signals and anything that must not share state."""
    done = subprocess.run([sys.executable, "-m", "servesim.sim.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)
    return Outcome(done.returncode, done.stdout, done.stderr)


def assert_user_error(outcome: Outcome, *fragments: str) -> None:
    """Exit 2, one paragraph starting `simrun: error:`, no traceback, each fragment (case-insensitive) in it."""
    assert outcome.code == EXIT_USER_ERROR, (outcome.code, outcome.stderr)
    assert "Traceback" not in outcome.stderr, outcome.stderr
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("simrun: error:")]
    assert len(errors) == 1, outcome.stderr
    message = errors[0].lower()
    for fragment in fragments:
        assert fragment.lower() in message, (fragment, errors[0])


def tree(path: Path) -> dict[str, bytes]:
    """Every file under `path` with its bytes: to show that a failed run changed nothing."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def assert_run_refused(tmp_path: Path, capsys, config: dict, fragments) -> None:
    """`simrun run` of `config` exits 2 with each fragment in its error (a config's problems may be
    listed on the lines below the error line) and leaves `tmp_path` as it was."""
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config))
    before = tree(tmp_path)
    outcome = simrun_in_process(["run", str(tmp_path / "exp.yaml"), "-o", str(tmp_path / "out")], capsys)
    assert_user_error(outcome)
    for fragment in fragments:
        assert fragment.lower() in outcome.stderr.lower(), (fragment, outcome.stderr)
    assert tree(tmp_path) == before
