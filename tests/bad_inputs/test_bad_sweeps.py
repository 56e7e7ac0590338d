"""Bad sweeps: one paragraph, exit 2, nothing run and nothing written (see harness.py)."""
import pytest
import yaml

from tests.bad_inputs.harness import assert_user_error, simrun_in_process, simrun_subprocess, tree
from tests.sweep.configs import tiny


def assert_refused(outcome, *fragments):
    """A user error (exit 2, no traceback) whose message, with the problems listed below it, names each fragment."""
    assert_user_error(outcome)
    for fragment in fragments:
        assert fragment in outcome.stderr, (fragment, outcome.stderr)


def write(tmp_path, config):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.parametrize(("sweep", "fragments"), [
    ({"grid": {"cluster.replica": [1, 2]}}, ("sweep.grid", "'cluster.replica'", "did you mean 'replicas'")),
    ({"grid": {"scheduler.max_num_seqs": []}}, ("sweep", "empty list")),
    ({"zip": {"seed": [1, 2, 3], "workload.rate_scale": [1, 2]}}, ("sweep", "one length", "seed: 3")),
    ({"grid": {"cluster.replicas": [1, 0]}}, ("1 of the sweep's 2 points are invalid", "p0001 (cluster.replicas=0)")),
    ({"variants": {"good": {}, "bad": {"model": "gpt-17"}}}, ("p0001 (bad)", "nothing was run", "gpt-17")),
    ({"grid": {"workload.classes.0": [1]}}, ("sweep.grid", "workload.classes is a value")),
    ({"seeds": [0, -1]}, ("sweep.seeds",)),
])
def test_bad_sweep_blocks_are_refused_before_anything_runs(tmp_path, capsys, sweep, fragments):
    path = write(tmp_path, tiny(sweep))
    outcome = simrun_in_process(["sweep", str(path), "-o", str(tmp_path / "out"), "--quiet"], capsys)
    assert_refused(outcome, *fragments)
    assert not (tmp_path / "out").exists()


def test_a_config_without_a_sweep_block(tmp_path, capsys):
    config = tiny({"seeds": [0]})
    del config["sweep"]
    outcome = simrun_in_process(["sweep", str(write(tmp_path, config)), "-o", str(tmp_path / "out")], capsys)
    assert_user_error(outcome, "has no `sweep:` block")


def test_a_directory_holding_other_files_is_not_written(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = tree(out)
    outcome = simrun_in_process(["sweep", str(write(tmp_path, tiny({"seeds": [0]}))), "-o", str(out)], capsys)
    assert_user_error(outcome, "holds no sweep.yaml", "choose another -o")
    assert tree(out) == before


def test_a_sweep_directory_inside_a_results_directory_is_refused(tmp_path, capsys):
    results = tmp_path / "run"
    results.mkdir()
    (results / ".servesim-results").write_text("{}")
    outcome = simrun_in_process(["sweep", str(write(tmp_path, tiny({"seeds": [0]}))), "-o", str(results / "sw")],
                                capsys)
    assert_user_error(outcome, "inside the servesim results directory")


def test_an_address_without_the_ray_backend(tmp_path, capsys):
    outcome = simrun_in_process(["sweep", str(write(tmp_path, tiny({"seeds": [0]}))), "-o", str(tmp_path / "out"),
                                 "--address", "auto", "--quiet"], capsys)
    assert_user_error(outcome, "--address", "--backend ray")
    assert not (tmp_path / "out").exists()


def test_an_unknown_backend_is_an_argument_error(tmp_path):
    outcome = simrun_subprocess(["sweep", str(write(tmp_path, tiny({"seeds": [0]}))), "--backend", "dask"])
    assert outcome.code == 2 and "invalid choice: 'dask'" in outcome.stderr
