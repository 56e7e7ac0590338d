"""`cost_model.kind: auto` with bad or unmet table settings: exit 2, one paragraph naming the key, nothing written."""
import pytest
import yaml

from tests.bad_inputs.harness import assert_user_error, simrun_in_process, tree
from tests.bad_inputs.test_cost_table_selection import BASE


@pytest.mark.parametrize("cost_model, fragments", [
    ({"kind": "automatic"}, ["cost_model.kind", "auto"]),
    ({"source": "profiled"}, ["cost_model.tables", "no shipped cost tables from source 'profiled'", "h100-sxm"]),
    ({"kind": "auto", "tables": "missing"}, ["cost_model.tables", "no such cost-table directory"]),
])
def test_auto_with_unmet_table_settings_exits_2(tmp_path, capsys, cost_model, fragments):
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump({**BASE, "cost_model": cost_model}))
    before = tree(tmp_path)
    outcome = simrun_in_process(["run", str(tmp_path / "exp.yaml"), "-o", str(tmp_path / "out")], capsys)
    assert_user_error(outcome)
    assert all(fragment in outcome.stderr for fragment in fragments), outcome.stderr
    assert tree(tmp_path) == before
