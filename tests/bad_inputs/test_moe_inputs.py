"""Bad `cost_model.moe` sections and layered-prefill settings: exit 2, one paragraph naming the key, nothing written."""
import pytest
import yaml

from tests.bad_inputs.harness import assert_user_error, simrun_in_process, tree

MOE = {
    "name": "moe", "model": "qwen3-30b-a3b", "hardware": "h100-sxm", "cost_model": {"kind": "roofline"},
    "workload": {"arrival": {"process": "poisson", "rate": 1.0}, "prompt_tokens": {"dist": "fixed", "value": 64},
                 "output_tokens": {"dist": "fixed", "value": 4}, "num_requests": 3},
    "output": {"plots": False},
}


def refused(tmp_path, capsys, config, *fragments):
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(config))
    before = tree(tmp_path)
    outcome = simrun_in_process(["run", str(tmp_path / "exp.yaml"), "-o", str(tmp_path / "out")], capsys)
    assert_user_error(outcome)
    for fragment in fragments:  # a validation error lists its problems below its first line
        assert fragment.lower() in outcome.stderr.lower(), (fragment, outcome.stderr)
    assert tree(tmp_path) == before


def with_moe(moe, **changes):
    return {**MOE, "cost_model": {"kind": "roofline", "moe": moe}, **changes}


@pytest.mark.parametrize("config, fragments", [
    (with_moe({"routing": "zipf"}, model="llama-3.1-8b"), ("cost_model.moe", "dense")),
    (with_moe({"routing": "zipf"}, cost_model={"kind": "table", "moe": {"routing": "zipf"}}),
     ("cost_model.moe", "kind: roofline")),
    (with_moe({"routing": "trace"}), ("trace",)),
    (with_moe({"routing": "uniform", "trace": "x.csv"}), ("trace",)),
    (with_moe({"routing": "trace", "trace": "missing.csv"}), ("cost_model.moe.trace", "missing.csv")),
    (with_moe({"placement": [0, 1]}), ("cost_model.moe.placement", "128 experts")),
    (with_moe({"offload": {"gpu_experts": 128}}), ("cost_model.moe.offload.gpu_experts", "128")),
    (with_moe({"offload": {"gpu_experts": 8, "policy": "fifo"}}), ("policy",)),
    (with_moe({"locality": 1.5}), ("locality",)),
    (with_moe({"zipf_s": 0}), ("zipf_s",)),
    ({**MOE, "scheduler": {"name": "layered_prefill", "num_layer_groups": 49}}, ("num_layer_groups", "48 layers")),
    ({**MOE, "scheduler": {"name": "layered_prefill", "chunked_prefill": True}}, ("chunked_prefill",)),
    ({**MOE, "scheduler": {"name": "layered_prefill"},
      "cluster": {"replicas": 2, "parallel": {"ep_across_replicas": True}}}, ("ep_across_replicas",)),
    ({**MOE, "scheduler": {"name": "layered_prefill"}, "engine": {"intra_gpu_split": {"name": "static"}}},
     ("intra_gpu_split",)),
])
def test_a_bad_moe_or_layered_prefill_setting_exits_2(tmp_path, capsys, config, fragments):
    refused(tmp_path, capsys, config, *fragments)


def test_a_bad_routing_trace_row_is_named(tmp_path, capsys):
    (tmp_path / "routing.csv").write_text("expert,count\n0,5\n300,2\n")
    refused(tmp_path, capsys, with_moe({"routing": "trace", "trace": "routing.csv"}), "routing.csv", "row 3")
