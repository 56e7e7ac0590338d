"""The pieces of benchmarks/fit_engine_overheads.py that do not need the real runs."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import fit_engine_overheads as fit  # noqa: E402


def test_stages_switch_the_pieces_on_one_at_a_time() -> None:
    assert "engine.cuda_graphs=false" in fit.stage_overrides(0)
    assert {"engine.cuda_graphs=true", "engine.async_scheduling=false"} <= set(fit.stage_overrides(1))
    assert "engine.cpu_per_iteration_s=0.002" in fit.stage_overrides(2, 0.002)
    assert all("engine.version=none" in fit.stage_overrides(k) for k in range(3))


def test_the_shared_fit_minimises_the_mean_over_the_runs_fitted_on() -> None:
    """Run `a` wants 1 ms per step, run `b` 3 ms and 10 us per sequence; fitted together the set
    lands between them; `b` alone gets its own optimum, and the per-iteration-only fit has no
    per-sequence term."""
    errors = fit.RunErrors([])
    wanted = {"a": (1e-3, 0.0, 0.0), "b": (3e-3, 10e-6, 0.0)}
    errors.error = lambda name, stage, it, seq, eager=0.0: (
        abs(it - wanted[name][0]) * 100 + abs(seq - wanted[name][1]) * 1e3 + abs(eager - wanted[name][2]) * 10)
    assert errors.fit(["b"])[:3] == (3e-3, 10e-6, 0.0)
    it, seq, _, _ = errors.fit(["a", "b"])
    assert 1e-3 <= it <= 3e-3
    assert errors.fit(["a", "b"], with_sequence=False)[1] == 0.0
    wanted["b"] = (0.25e-3, 5e-6, 4e-3)
    assert errors.fit(["b"], with_eager=True)[:3] == (0.25e-3, 5e-6, 4e-3)
    assert errors.fit(["b"])[2] == 0.0  # the two-term fit leaves the eager-step term out


def test_the_eager_step_term_is_a_stage_override() -> None:
    assert "engine.cpu_per_eager_iteration_s=0.004" in fit.stage_overrides(2, 0.0, 0.0, 0.004)
    assert "engine.cpu_per_eager_iteration_s=0.0" in fit.stage_overrides(2)


def _run(folder: Path, slope_s: float) -> None:
    folder.mkdir(parents=True)
    rows = [{"input_toks": n, "arrival_time": 100.0 + i, "queued_ts": 7.0 + i + slope_s * n}
            for i, n in enumerate((100, 400, 1600, 3000))]
    (folder / "vllm_requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_api_slope_is_the_median_and_zero_when_runs_disagree(tmp_path: Path) -> None:
    _run(tmp_path / "a" / "one", 2e-6)
    _run(tmp_path / "a" / "two", 4e-6)
    assert fit.api_per_prompt_token_s(tmp_path / "a") == pytest.approx(3e-6)
    _run(tmp_path / "b" / "one", 2e-6)
    _run(tmp_path / "b" / "two", -4e-6)
    assert fit.api_per_prompt_token_s(tmp_path / "b") == 0.0


def test_the_written_set_is_the_versions_shared_default(tmp_path: Path) -> None:
    path = tmp_path / "engine_overheads.yaml"
    path.write_text(fit.OVERHEADS_FILE.read_text())
    values = {"cpu_per_iteration_s": 0.001, "cpu_per_sequence_s": 1e-6, "api_fixed_s": 0.0,
              "api_per_prompt_token_s": 0.0, "api_stream_out_s": 0.0, "source": "test"}
    fit.write_default("vllm-0.19", values, path)
    data = yaml.safe_load(path.read_text())
    assert data["vllm-0.19"] == {"default": values} and "none" in data
    assert path.read_text().startswith("# The serving engine's own time")
