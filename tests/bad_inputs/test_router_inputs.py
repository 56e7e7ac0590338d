"""Bad router configurations are refused before anything runs: one paragraph, exit 2, nothing written."""
import yaml

from tests.bad_inputs.harness import EXIT_USER_ERROR, Outcome, simrun_in_process, tree

BASE = {
    "name": "routers",
    "cost_model": {"kind": "constant", "iteration_s": 0.01},
    "cluster": {"replicas": 2},
    "workload": {"arrival": {"rate": 10.0}, "prompt_tokens": {"dist": "fixed", "value": 32},
                 "output_tokens": {"dist": "fixed", "value": 4}, "num_requests": 5},
    "output": {"plots": False},
}


def run(tmp_path, capsys, router: dict, cache: dict | None = None):
    config = {**BASE, "cluster": {**BASE["cluster"], "router": router}, **({"cache": cache} if cache else {})}
    path = tmp_path / "routers.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    outcome = simrun_in_process(["run", str(path), "-o", str(out)], capsys)
    assert tree(out) == {}
    return outcome


def assert_refused(outcome: Outcome, *fragments: str) -> None:
    """Exit 2 with one `simrun: error:` paragraph, no traceback, naming each fragment (the paragraph
    lists its problems on the lines below its first)."""
    assert outcome.code == EXIT_USER_ERROR and "Traceback" not in outcome.stderr, outcome.stderr
    assert sum(line.startswith("simrun: error:") for line in outcome.stderr.splitlines()) == 1
    for fragment in fragments:
        assert fragment in outcome.stderr, (fragment, outcome.stderr)


def test_a_balance_threshold_below_one_is_refused(tmp_path, capsys):
    outcome = run(tmp_path, capsys, {"name": "prefix_affinity", "balance_rel_threshold": 0.5},
                  {"prefix_caching": True})
    assert_refused(outcome, "cluster.router", "prefix_affinity", "balance_rel_threshold", "greater than or equal to 1")


def test_a_negative_absolute_threshold_is_refused(tmp_path, capsys):
    assert_refused(run(tmp_path, capsys, {"name": "session_affinity", "balance_abs_threshold": -3}),
                      "session_affinity", "balance_abs_threshold")


def test_prefix_affinity_without_a_prefix_cache_is_refused(tmp_path, capsys):
    assert_refused(run(tmp_path, capsys, {"name": "prefix_affinity"}), "cluster.router", "cache.prefix_caching")


def test_an_unknown_router_parameter_lists_the_valid_ones(tmp_path, capsys):
    assert_refused(run(tmp_path, capsys, {"name": "power_of_two", "choices": 3}), "choices: unknown parameter")
