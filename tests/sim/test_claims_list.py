"""An experiment may state several claims (`claims:` beside or instead of `claim:`): each is
validated, checked and reported by `simrun run`."""
import json
from typing import Any

import pytest
import yaml

from servesim.sim.cli import main
from servesim.sim.errors import ConfigError
from servesim.sim.experiment.loading import validate_config
from tests.sim.test_variants import BASE

BATCHED_FASTER = BASE["claim"]
BATCHED_MORE_OUTPUT = {"metric": "throughput.output_tokens_per_s", "better": "higher", "variant": "batched",
                       "baselines": ["one_at_a_time"]}
ONE_AT_A_TIME_FASTER = {**BATCHED_FASTER, "variant": "one_at_a_time", "baselines": ["batched"]}


def _run(config: dict[str, Any], tmp_path, capsys) -> tuple[str, dict[str, Any]]:
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "-o", str(tmp_path / "res")]) == 0
    return capsys.readouterr().out, json.loads((tmp_path / "res" / "comparison.json").read_text())


def test_every_claim_is_checked_and_reported_in_order(tmp_path, capsys):
    config = {**BASE, "claims": [BATCHED_MORE_OUTPUT, ONE_AT_A_TIME_FASTER]}
    printed, comparison = _run(config, tmp_path, capsys)
    verdicts = [line for line in printed.splitlines() if line.startswith("claim: ")]
    assert len(verdicts) == 3
    assert "batched has lower e2e_s.p50" in verdicts[0] and verdicts[0].endswith("-> holds")
    assert "batched has higher throughput.output_tokens_per_s" in verdicts[1]
    assert "one_at_a_time has lower e2e_s.p50" in verdicts[2] and verdicts[2].endswith("does NOT hold")
    claims = comparison["claims"]
    assert [c["metric"] for c in claims] == ["e2e_s.p50", "throughput.output_tokens_per_s", "e2e_s.p50"]
    assert comparison["claim"] == claims[0] and claims[0]["holds"] is True and claims[2]["holds"] is False
    assert claims[0]["value"] == claims[2]["baseline_values"]["batched"]
    throughput = {name: row["throughput.output_tokens_per_s"] for name, row in comparison["variants"].items()}
    assert claims[1]["value"] == throughput["batched"]
    assert claims[1]["holds"] is (throughput["batched"] > throughput["one_at_a_time"])


def test_claims_without_a_single_claim_report_the_first_under_claim(tmp_path, capsys):
    config = {key: value for key, value in BASE.items() if key != "claim"}
    _, comparison = _run({**config, "claims": [ONE_AT_A_TIME_FASTER]}, tmp_path, capsys)
    assert comparison["claim"] == comparison["claims"][0] and comparison["claim"]["variant"] == "one_at_a_time"


def test_a_run_without_claims_reports_none(tmp_path, capsys):
    config = {key: value for key, value in BASE.items() if key != "claim"}
    printed, comparison = _run(config, tmp_path, capsys)
    assert comparison["claim"] is None and comparison["claims"] == []
    assert "claim: " not in printed


@pytest.mark.parametrize("claims, fragment", [
    ([BATCHED_MORE_OUTPUT, {**BATCHED_FASTER, "baselines": ["nope"]}], "claims[1] names variant(s) nope"),
    ([{**BATCHED_FASTER, "metric": "e2e_s.p05"}], "claims[0].metric: 'e2e_s.p05' is not a key path"),
    ([{**BATCHED_FASTER, "metric": "e2e_s"}], "claims[0].metric: 'e2e_s' is a group of figures"),
])
def test_a_bad_claim_in_the_list_is_named_by_its_index(claims, fragment):
    with pytest.raises(ConfigError) as caught:
        validate_config({**BASE, "claims": claims})
    assert fragment in str(caught.value)



def test_a_config_without_claims_dumps_and_hashes_as_before_the_key_existed():
    assert "claims" not in validate_config(BASE).model_dump()
    assert validate_config({**BASE, "claims": [BATCHED_MORE_OUTPUT]}).model_dump()["claims"][0]["variant"] == "batched"
