"""The parallel-plan rules of real engines: TP divides heads and MLP; K/V heads split or replicate."""
import pytest

from servesim.hwmodels import ParallelPlan
from servesim.hwmodels.catalog import load_hardware, load_model
from servesim.hwmodels.model_spec import ModelSpec
from servesim.hwmodels.plan_rules import plan_problems

H100 = load_hardware("h100-sxm")


def model(heads: int = 32, kv: int = 8, inter: int = 14336) -> ModelSpec:
    return ModelSpec("m", "test", num_layers=4, hidden_size=heads * 128, num_attention_heads=heads, num_kv_heads=kv,
                     head_dim=128, intermediate_size=inter, vocab_size=1000, max_position_embeddings=4096,
                     weight_dtype="bf16", kv_dtype="bf16", activation_dtype="bf16")


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_llama_runs_at_every_tp_within_a_node(tp):
    assert plan_problems(ParallelPlan(tp=tp), load_model("llama-3.1-8b"), H100) == []


def test_tp_above_the_kv_heads_replicates_one_head_per_device():
    m = model(heads=32, kv=2)
    assert plan_problems(ParallelPlan(tp=8), m, H100) == []
    assert m.kv_heads_per_device(8) == 1
    assert m.kv_bytes_per_token_per_device(ParallelPlan(tp=8)) == m.kv_bytes_per_token_per_device(ParallelPlan(tp=2))


@pytest.mark.parametrize(("heads", "kv", "tp"), [(24, 6, 4), (12, 4, 3), (24, 4, 6)])
def test_tp_that_neither_divides_nor_is_a_multiple_of_the_kv_heads_is_refused(heads, kv, tp):
    problems = plan_problems(ParallelPlan(tp=tp), model(heads=heads, kv=kv, inter=12288), H100)
    assert any("K/V heads" in p for p in problems), problems


def test_tp_must_divide_the_mlp_intermediate_size():
    problems = plan_problems(ParallelPlan(tp=2), model(inter=14335), H100)
    assert problems == [p for p in problems if "intermediate size 14335" in p] and problems


def test_mla_latent_kv_ignores_the_kv_head_rule():
    deepseek = load_model("deepseek-v3")
    assert deepseek.uses_mla
    assert not any("K/V" in p for p in plan_problems(ParallelPlan(tp=8), deepseek, H100))


def test_every_problem_is_reported_at_once():
    problems = plan_problems(ParallelPlan(tp=16, pp=99), model(heads=12, kv=4, inter=1000), H100)
    assert [p.split(" ")[0] for p in problems] == ["cluster.parallel.tp:"] * 3 + ["cluster.parallel.pp:"]
    assert ["node" in problems[0], "attention heads" in problems[1], "intermediate" in problems[2]] == [True] * 3
