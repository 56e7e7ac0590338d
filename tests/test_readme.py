"""The README stays true: every config key, summary key and request column is documented."""
import re
from pathlib import Path

from servesim.sim.experiment.config import ExperimentConfig, PolicySpec
from servesim.sim.experiment.loading import _model_in

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def config_keys(model=ExperimentConfig, prefix=""):
    for name, field in model.model_fields.items():
        sub = _model_in(field.annotation)
        if sub is not None and not issubclass(sub, PolicySpec):
            yield from config_keys(sub, f"{prefix}{name}.")
        else:
            yield prefix + name


def test_every_config_key_is_in_the_config_reference():
    missing = [key for key in config_keys() if f"| `{key}" not in README]
    assert not missing


def test_the_two_setup_commands_are_there_and_ci_runs_the_test_one():
    commands = re.findall(r"```bash\n(.+?)\n```", README)
    assert any("simrun run experiments/quickstart.yaml" in c for c in commands)
    test_command = next(c for c in commands if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text()
    steps = test_command.split(" && ")
    assert steps[:2] == ["python3 -m venv .venv", ". .venv/bin/activate"]
    install = next(step for step in steps if step.startswith("pip install"))
    assert install == "pip install -e '.[test,profile,lint]'"
    assert install.replace("pip install", "python -m pip install --quiet") in ci
    ci_steps = [line for line in ci.splitlines() if line and not line.startswith("#")]
    assert ci_steps[-2:] == steps[-2:] == ["bash .ci/lint", "python -m pytest -n auto --dist loadgroup"]


def test_summary_keys_and_request_columns_are_documented(tmp_path):
    from servesim.sim.experiment.loading import validate_config
    from servesim.sim.runner import run_experiment

    config = validate_config({
        "cost_model": {"kind": "constant", "iteration_s": 0.01},
        "workload": {"arrival": {"rate": 10.0}, "prompt_tokens": {"dist": "fixed", "value": 10},
                     "output_tokens": {"dist": "fixed", "value": 3}, "num_requests": 5},
    })
    result = run_experiment(config)
    for key in result.summary:
        assert f"`{key}`" in README, key
    for column in result.requests.columns:
        assert f"`{column}`" in README, column
    for column in result.replica_series.columns:
        assert f"`{column}`" in README, column
