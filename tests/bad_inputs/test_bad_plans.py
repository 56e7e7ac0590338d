"""Bad placement searches: one paragraph naming the key, exit 2, nothing run and nothing written."""
import pytest
import yaml

from servesim.sim.placement.candidates import MAX_CANDIDATES
from tests.bad_inputs.harness import assert_user_error, simrun_in_process, tree
from tests.plan.configs import tiny_plan


def assert_refused(outcome, *fragments):
    """A user error (exit 2, no traceback) whose message, with any lines listed below it, names each fragment."""
    assert_user_error(outcome)
    for fragment in fragments:
        assert fragment in outcome.stderr, (fragment, outcome.stderr)


def plan_of(tmp_path, capsys, data, *extra):
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return simrun_in_process(["plan", str(path), "-o", str(tmp_path / "out"), "--quiet", "--jobs", "1", *extra],
                             capsys)


@pytest.mark.parametrize(("plan", "fragments"), [
    ({"gpus": 0}, ("plan.gpus",)),
    ({"tp": [1]}, ("plan.gpus", "missing")),
    ({"gpus": 4, "tpp": [1]}, ("plan.tpp", "did you mean 'tp'")),
    ({"gpus": 4, "tp": []}, ("plan.tp: empty list",)),
    ({"gpus": 4, "tp": [2, 2]}, ("plan.tp: [2, 2] repeats a value",)),
    ({"gpus": 4, "tp": [0]}, ("plan.tp.0",)),
    ({"gpus": 4, "modes": ["colocated"]}, ("plan.modes.0",)),
    ({"gpus": 4, "min_rate": 5, "max_rate": 2}, ("plan.min_rate (5) must be below plan.max_rate (2)",)),
    ({"gpus": 4, "max_rate": -1}, ("plan.max_rate",)),
    ({"gpus": 4, "tolerance": 0}, ("plan.tolerance",)),
    ({"gpus": 2, "tp": [2], "modes": ["disaggregated"]}, ("plan.gpus: 2 GPU(s) cannot hold the smallest candidate",
                                                         "for each of two pools")),
    ({"gpus": 4, "tp": [8]}, ("plan.gpus: 4 GPU(s) cannot hold",)),
    ({"gpus": 3, "tp": [2], "use_all_gpus": True, "modes": ["unified"]}, ("plan: no candidate uses exactly "
                                                                          "plan.gpus=3",)),
    ({"gpus": 4, "min_rate": 1000}, ("plan.min_rate: 1000 requests/s is not below",)),
    ({"gpus": 512, "tp": [1], "modes": ["disaggregated"]}, (f"more than the {MAX_CANDIDATES:,} a search runs",)),
])
def test_bad_plan_blocks_are_refused_before_anything_runs(tmp_path, capsys, plan, fragments):
    assert_refused(plan_of(tmp_path, capsys, tiny_plan(plan)), *fragments)
    assert not (tmp_path / "out").exists()


def test_a_config_without_a_plan_block(tmp_path, capsys):
    data = tiny_plan({"gpus": 1})
    del data["plan"]
    assert_refused(plan_of(tmp_path, capsys, data), "has no `plan:` block")


def test_a_plan_without_any_slo_is_refused(tmp_path, capsys):
    assert_refused(plan_of(tmp_path, capsys, tiny_plan({"gpus": 2}, slo={})), "sets no SLO")


def test_a_plan_where_no_candidate_fits_names_the_reason(tmp_path, capsys):
    outcome = plan_of(tmp_path, capsys, tiny_plan({"gpus": 2, "tp": [1, 2], "modes": ["unified"]},
                                                  model="llama-3.1-70b", hardware="a100-40g"))
    assert_refused(outcome, "plan: none of the 3 candidates can run; nothing was run",
                   "llama-3.1-70b does not fit on a100-40g")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("sections", "fragments"), [
    ({"variants": {"a": {"seed": 1}}}, ("also has variants",)),
    ({"sweep": {"seeds": [0, 1]}}, ("also has sweep",)),
])
def test_a_plan_mixed_with_variants_or_a_sweep_is_refused(tmp_path, capsys, sections, fragments):
    assert_refused(plan_of(tmp_path, capsys, tiny_plan({"gpus": 2}, **sections)), *fragments)


def test_closed_loop_and_offline_batch_workloads_have_no_rate_to_search(tmp_path, capsys):
    data = tiny_plan({"gpus": 2})
    del data["workload"]["arrival"]
    data["workload"]["clients"] = {"concurrency": 2}
    assert_refused(plan_of(tmp_path, capsys, data), "plan: workload.clients is a closed loop")
    data = tiny_plan({"gpus": 2})
    data["workload"]["arrival"] = {"process": "batch"}
    assert_refused(plan_of(tmp_path, capsys, data), "all arrive at once")


def test_a_directory_holding_other_files_is_not_written(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = tree(out)
    assert_refused(plan_of(tmp_path, capsys, tiny_plan({"gpus": 2})), "not a servesim results directory")
    assert tree(out) == before


def test_bad_backend_options_are_refused(tmp_path, capsys):
    assert_refused(plan_of(tmp_path, capsys, tiny_plan({"gpus": 2}), "--jobs", "0"), "--jobs must be at least 1")
