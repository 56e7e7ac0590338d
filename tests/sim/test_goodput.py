"""Max goodput: bisection on the rate scale for the highest load that meets the attainment target."""
import pytest
import yaml

from servesim.sim.cli import main
from servesim.sim.errors import ConfigError
from servesim.sim.experiment.loading import validate_config
from servesim.sim.goodput import max_goodput

CONFIG = {
    "name": "gp",
    "cost_model": {"kind": "constant", "iteration_s": 0.01},
    "scheduler": {"name": "vllm", "max_num_seqs": 1},
    "workload": {
        "arrival": {"process": "constant", "rate": 10.0},
        "prompt_tokens": {"dist": "fixed", "value": 16},
        "output_tokens": {"dist": "fixed", "value": 5},
        "num_requests": 200,
    },
    "slo": {"e2e_s": 0.1},
    "output": {"plots": False},
}


def test_the_search_brackets_the_capacity_of_a_deterministic_server():
    # One request at a time, 5 iterations of 10 ms each: capacity 20 req/s, i.e. scale 2 of 10 req/s.
    # Below it every request waits nothing; above it the queue grows without bound.
    search = max_goodput(validate_config(CONFIG), low=0.5, high=4.0, tolerance=0.01)
    best_scale, offered, attainment = search.best
    assert attainment >= 0.9
    assert 1.8 < best_scale <= 2.02
    above = [p for p in search.probes if p[0] > best_scale]
    assert above and all(p[2] < 0.9 for p in above)
    assert min(p[0] for p in above) / best_scale <= 1.01 + 1e-9


def test_a_load_too_high_even_at_the_lowest_scale_reports_no_best():
    tight = {**CONFIG, "slo": {"e2e_s": 0.001}}
    search = max_goodput(validate_config(tight), low=0.5, high=4.0)
    assert search.best is None and len(search.probes) == 1


def test_a_bad_bracket_is_a_user_error():
    with pytest.raises(ConfigError, match="0 < low < high"):
        max_goodput(validate_config(CONFIG), low=2.0, high=1.0)


def test_simrun_goodput_searches_every_variant(tmp_path, capsys):
    data = {**CONFIG, "variants": {"one": {}, "two_seqs": {"scheduler": {"name": "vllm", "max_num_seqs": 2}}}}
    path = tmp_path / "gp.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["goodput", str(path), "--low", "0.5", "--high", "8", "--tolerance", "0.05"]) == 0
    printed = capsys.readouterr().out
    assert "one: max goodput" in printed and "two_seqs: max goodput" in printed
