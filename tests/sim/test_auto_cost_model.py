"""`cost_model.kind: auto`, the default: measured tables where servesim ships them, else the roofline."""
import warnings
from pathlib import Path

import pytest

from servesim.hwmodels.tables.shipped import auto_cost_model_kind, has_shipped_tables
from servesim.sim import load_config, run_experiment, runner
from servesim.sim.experiment.config import CostModelConfig
from servesim.sim.reporting.headline import headline
from servesim.sim.validation.real_runs import read_run
from servesim.sim.validation.replay import ReplayOptions, replay, replay_config

WORKLOAD = {"arrival": {"rate": 20.0}, "prompt_tokens": {"dist": "fixed", "value": 300},
            "output_tokens": {"dist": "fixed", "value": 8}, "num_requests": 12}
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "real_run_sample"


def summary_of(**config) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # operators the tables lack, priced by the roofline
        return run_experiment(load_config({"workload": WORKLOAD, "output": {"plots": False}, **config})).summary


def test_auto_is_the_default():
    assert CostModelConfig().kind == "auto"
    assert load_config({"workload": WORKLOAD}).cost_model.kind == "auto"


@pytest.mark.parametrize("hardware, model, tp, kind", [
    ("rtx-pro-6000", "llama-3.1-8b", 1, "table"),  # aiconfigurator only
    ("h100-sxm", "llama-3.1-8b", 1, "table"),  # aiconfigurator and vidur
    ("h100-sxm", "llama-2-70b", 8, "table"),
    ("cpu", "tiny-llama", 1, "table"),  # servesim's own profiler
    ("rtx-4090", "llama-3.1-8b", 1, "roofline"),  # no tables for this GPU
    ("mi300x", "llama-2-7b", 1, "roofline"),
    ("a100-80g", "mixtral-8x7b", 1, "roofline"),  # tables shipped, but not at this TP degree
    ("l40s", "llama-3.1-70b", 1, "roofline"),
])
def test_auto_picks_the_shipped_tables_that_cover_the_run(hardware, model, tp, kind):
    assert auto_cost_model_kind(hardware, model, [tp]) == kind
    assert has_shipped_tables(hardware, model, [tp]) == (kind == "table")


def test_a_tp_degree_must_be_covered_by_one_source():
    assert has_shipped_tables("h100-sxm", "qwen2.5-7b", [1, 4])
    assert not has_shipped_tables("h100-sxm", "qwen2.5-7b", [4, 8])


def test_a_default_run_uses_the_shipped_tables_and_matches_an_explicit_table_run():
    setup = {"model": "llama-3.1-8b", "hardware": "rtx-pro-6000"}
    auto, table = summary_of(**setup), summary_of(**setup, cost_model={"kind": "table"})
    cost = auto["run"]["cost_model"]
    assert cost["kind"] == "table" and cost["chosen_by"] == "auto"
    assert cost["tables"] == "hwmodels/data/tables/aiconfigurator/rtx-pro-6000/llama-3.1-8b"
    assert "chosen_by" not in table["run"]["cost_model"]
    assert auto["e2e_s"] == table["e2e_s"] and auto["ttft_s"] == table["ttft_s"]
    line = headline(auto).splitlines()[0]
    assert line.endswith(f"cost model: profiled tables {cost['tables']}" + line.split(cost["tables"], 1)[1])


def test_a_default_run_without_tables_falls_back_to_the_roofline_and_says_so():
    setup = {"model": "llama-2-7b", "hardware": "mi300x"}
    auto, roofline = summary_of(**setup), summary_of(**setup, cost_model={"kind": "roofline"})
    assert auto["run"]["cost_model"]["kind"] == "roofline" and auto["run"]["cost_model"]["chosen_by"] == "auto"
    assert auto["e2e_s"] == roofline["e2e_s"] and auto["ttft_s"] == roofline["ttft_s"]
    assert headline(auto).splitlines()[0].endswith(
        "cost model: calibrated roofline (no shipped table for mi300x/llama-2-7b at TP1)")
    assert "roofline (no profiled tables exist" in headline(roofline).splitlines()[0]


def test_auto_falls_back_when_the_tables_lack_the_tp_degree():
    # Mixtral's tables on the A100 start at TP2; in fp8 its weights fit one device.
    summary = summary_of(model={"name": "mixtral-8x7b", "weight_dtype": "fp8"}, hardware="a100-80g")
    assert summary["run"]["cost_model"]["kind"] == "roofline"


def test_auto_uses_tables_the_config_names():
    summary = summary_of(model="llama-2-7b", hardware="h100-sxm", cost_model={"source": "vidur"})
    assert summary["run"]["cost_model"]["tables"] == "hwmodels/data/tables/vidur/h100-sxm/llama-2-7b"


def test_validate_real_auto_is_the_config_auto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """validate-real hands `auto` to the run's config, so the runner's one definition decides."""
    run = read_run(SAMPLE)
    config, _ = replay_config(run, ReplayOptions(hardware="rtx-pro-6000", model="llama-3.1-8b"))
    assert config["cost_model"] == {"kind": "auto"}
    asked = []

    def spy(hardware: str, model: str, tp_degrees) -> str:
        asked.append((hardware, model, set(tp_degrees)))
        return auto_cost_model_kind(hardware, model, tp_degrees)

    monkeypatch.setattr(runner, "auto_cost_model_kind", spy)
    replayed = replay(run, ReplayOptions(hardware="rtx-pro-6000", model="llama-3.1-8b"), tmp_path)
    assert asked == [("rtx-pro-6000", "llama-3.1-8b", {run.settings.tp})]
    assert replayed.result.summary["run"]["cost_model"]["kind"] == "table"
    assert "cost model table" in replayed.notes[0]
    (tmp_path / "4090").mkdir()
    fallback = replay(run, ReplayOptions(hardware="rtx-4090", model="llama-3.1-8b"), tmp_path / "4090")
    assert "cost model roofline" in fallback.notes[0]


def test_only_an_explicit_table_run_warns_of_the_operators_the_tables_lack():
    """A default run names them in its headline and summary; a warning on every default run is noise."""
    setup = {"workload": WORKLOAD, "output": {"plots": False}, "model": "llama-3.1-8b", "hardware": "rtx-pro-6000"}
    for kind, warned in (("auto", False), ("table", True)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            summary = run_experiment(load_config({**setup, "cost_model": {"kind": kind}})).summary
        assert any("no measurements of" in str(w.message) for w in caught) == warned, kind
        assert "sampling" in summary["run"]["cost_model"]["roofline_operators"]
