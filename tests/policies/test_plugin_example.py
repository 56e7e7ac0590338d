"""The worked plug-in example: installed with pip, found through its entry point, run from YAML.

The package is installed with pip into a folder of its own, which only the interpreters these
tests start have on their path: the test environment itself never holds it, so no other test
(in this process or in another pytest-xdist worker) can see the plug-in appear or vanish.
Everything that must see the entry point runs in such a new interpreter.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import yaml

from tests.policies.views import FakeReplica, waiting

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plugin_example"
DISTRIBUTION = "servesim-plugin-example"


def _run(*args: str, cwd: Path = ROOT, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """A new interpreter of this environment, with `path` (the example's install folder) first on its path."""
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return _run("-m", "pip", "--disable-pip-version-check", "--no-input", *args)


def _builds_without_isolation() -> bool:
    """Whether this environment's setuptools can build the wheel by itself, offline:
    from 70.1 it has `bdist_wheel` built in; before, it needs the `wheel` package beside it.
    Otherwise pip builds in an isolated environment, fetching setuptools from its index."""
    try:
        major, minor = (int(part) for part in version("setuptools").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return False
    if (major, minor) >= (70, 1):
        return True
    try:
        version("wheel")
    except PackageNotFoundError:
        return False
    return major >= 64


@pytest.fixture(scope="module")
def example_installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder pip installed the example into (its package and its entry points' metadata)."""
    folder = tmp_path_factory.mktemp("plugin_example")
    isolation = ["--no-build-isolation"] if _builds_without_isolation() else []
    result = _pip("install", "--quiet", "--no-deps", *isolation, "--target", str(folder), str(EXAMPLE))
    assert result.returncode == 0, f"pip could not install the example:\n{result.stdout}\n{result.stderr}"
    return folder


def test_the_yaml_experiment_runs_the_plug_in_and_beats_fcfs_on_mean_ttft(example_installed: Path,
                                                                           tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = _run("-m", "servesim.sim.cli", "run", str(EXAMPLE / "shortest_prompt_first.yaml"), "-o", str(out),
                  "--no-progress", cwd=tmp_path, path=example_installed)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((out / "shortest_prompt_first" / "config.yaml").read_text())
    assert config["scheduler"] == {"name": "shortest_prompt_first", "max_num_batched_tokens": 2048}
    variants = json.loads((out / "comparison.json").read_text())["variants"]
    fcfs, spf, bounded = variants["fcfs"], variants["shortest_prompt_first"], variants["bounded_wait"]
    # Short prompts pass long ones: mean and median TTFT fall, the longest waits grow ...
    assert spf["ttft_s.mean"] < 0.7 * fcfs["ttft_s.mean"] and spf["ttft_s.p50"] < 0.5 * fcfs["ttft_s.p50"]
    assert spf["ttft_s.p99"] > fcfs["ttft_s.p99"]
    # ... and bounding the wait gives back part of the gain to cap them.
    assert spf["ttft_s.mean"] < bounded["ttft_s.mean"] < fcfs["ttft_s.mean"]
    assert bounded["ttft_s.p99"] < spf["ttft_s.p99"]
    assert "-> holds" in result.stdout


def test_simrun_list_shows_the_plug_in_with_its_parameters(example_installed: Path) -> None:
    result = _run("-m", "servesim.sim.cli", "list", path=example_installed)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.split()[:1] == ["shortest_prompt_first"])
    assert row.endswith(f"[plug-in {DISTRIBUTION}]") and "fewest prompt tokens left to compute" in row
    assert "max_wait_s (float | None, default None): a request that has waited this long" in result.stdout


def test_the_plug_in_keeps_the_policy_contract(example_installed: Path) -> None:
    check = ("from policies import get_policy; from tests.policies.test_contract import check_policy; "
             "check_policy(get_policy('scheduler', 'shortest_prompt_first'))")
    result = _run("-c", check, path=example_installed)
    assert result.returncode == 0, result.stderr


def test_the_order_without_simpy_or_installation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler is an ordinary class: importing it registers nothing, and hand-made views test it."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from servesim_plugin_example import ShortestPromptFirstParams, ShortestPromptFirstSchedulerPolicy

    from servesim.policies import create_policy

    preemption = create_policy("preemption", "recompute", {})
    replica = FakeReplica(waiting=[waiting(0, 900, arrival_s=0.0), waiting(1, 50, arrival_s=1.0),
                                   waiting(2, 300, arrival_s=2.0)])
    by_length = ShortestPromptFirstSchedulerPolicy(ShortestPromptFirstParams(max_num_batched_tokens=400), preemption)
    scheduled = by_length.schedule(replica, now=3.0).scheduled
    assert [(r.request_id, n) for r, n in scheduled] == [(1, 50), (2, 300), (0, 50)]
    bounded = ShortestPromptFirstSchedulerPolicy(ShortestPromptFirstParams(max_wait_s=2.5), preemption)
    assert [r.request_id for r in bounded.order_waiting(replica, now=3.0)] == [0, 1, 2]
