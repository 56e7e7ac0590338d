"""The analysis notebook runs top to bottom on a results directory written by a real run."""
import json
from pathlib import Path

import matplotlib

from servesim.sim.experiment.loading import validate_config
from servesim.sim.reporting.results import write_results
from servesim.sim.runner import run_experiment

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "analyze_results.ipynb"


def run_notebook(path: Path, parameters: str) -> dict:
    """Execute the code cells in order, with the `parameters` cell replaced (as papermill does)."""
    cells = json.loads(path.read_text())["cells"]
    namespace: dict = {"display": lambda value: None}
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        if "parameters" in cell["metadata"].get("tags", []):
            source = parameters
        exec(compile(source, f"{path.name}", "exec"), namespace)
    return namespace


def test_notebook_runs_on_a_results_directory(tmp_path):
    matplotlib.use("Agg")
    config = validate_config({
        "name": "nb",
        "workload": {"arrival": {"rate": 5.0}, "prompt_tokens": {"dist": "fixed", "value": 100},
                     "output_tokens": {"dist": "fixed", "value": 20}, "num_requests": 50,
                     "classes": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]},
        "output": {"plots": False},
    })
    out = write_results(run_experiment(config), tmp_path / "nb", plots=False)
    namespace = run_notebook(NOTEBOOK, f"from pathlib import Path\nRESULTS = Path({str(out)!r})\n")
    assert len(namespace["requests"]) == 50
    assert set(namespace["per_class"].index) == {"a", "b"}
