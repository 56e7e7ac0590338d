"""Bad `model:` formats fail the README's way: exit 2, one paragraph naming the key, nothing written."""
from __future__ import annotations

import pytest
import yaml

from tests.bad_inputs.harness import EXIT_USER_ERROR, simrun_in_process, tree

SMALL = {
    "workload": {"arrival": {"rate": 1.0}, "prompt_tokens": {"dist": "fixed", "value": 10},
                 "output_tokens": {"dist": "fixed", "value": 2}, "num_requests": 2},
}


@pytest.mark.parametrize(("model", "fragments"), [
    ({"name": "llama-3.1-8b", "kv_dtype": "int4"}, ("model.kv_dtype: Input should be 'bf16', 'fp16' or 'fp8'",)),
    ({"name": "llama-3.1-8b", "weight_dtype": "int3"}, ("model.weight_dtype:", "'int4'")),
    ({"name": "llama-3.1-8b", "hf_config": "config.json"}, ("model", "exactly one of `name` and `hf_config`")),
    ({"kv_dtype": "fp8"}, ("model", "exactly one of `name` and `hf_config`")),
    ({"name": "llama-9", "kv_dtype": "fp8"}, ("model: unknown model 'llama-9'",)),
])
def test_bad_model_formats(tmp_path, capsys, model: dict, fragments: tuple[str, ...]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({**SMALL, "model": model}))
    before = tree(tmp_path)
    outcome = simrun_in_process(["run", str(config), "-o", str(tmp_path / "res")], capsys)
    assert outcome.code == EXIT_USER_ERROR and "Traceback" not in outcome.stderr
    assert sum(line.startswith("simrun: error:") for line in outcome.stderr.splitlines()) == 1
    for fragment in fragments:  # the paragraph lists every problem, one per line
        assert fragment in outcome.stderr, (fragment, outcome.stderr)
    assert tree(tmp_path) == before
