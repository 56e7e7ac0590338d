"""The operator list of one iteration: which operators, how many calls, and their work."""
from __future__ import annotations

import pytest

from servesim.hwmodels import BatchShape, ParallelPlan, load_model
from servesim.hwmodels.operators import OperatorBuilder, OpKind

MIXED = BatchShape((300, 1, 1), (200, 1000, 50))


def _ops(name: str, plan: ParallelPlan, batch: BatchShape = MIXED) -> dict[str, list]:
    ops: dict[str, list] = {}
    for op in OperatorBuilder(load_model(name), plan).iteration_ops(batch):
        ops.setdefault(op.name, []).append(op)
    return ops


def test_prefill_attention_is_priced_per_chunk() -> None:
    ops = _ops("llama-3.1-8b", ParallelPlan(), BatchShape((300, 1, 1, 1), (200, 1000, 50, 0)))
    assert len(ops["attn_prefill"]) == 2
    first = ops["attn_prefill"][0]
    assert first.flops == 4 * 32 * 128 * (300 * 200 + 300 * 301 // 2)
    assert first.bytes_moved == 500 * 2 * 8 * 128 * 2 + 300 * 2 * 32 * 128 * 2


def test_dense_model_operators_in_order() -> None:
    names = [op.name for op in OperatorBuilder(load_model("llama-3.1-8b"), ParallelPlan()).iteration_ops(MIXED)]
    assert names == ["cpu_overhead", "embedding", "input_norm", "attn_qkv_proj", "attn_rope", "kv_cache_write",
                     "attn_prefill", "attn_decode", "attn_out_proj", "post_norm", "mlp_gate_up", "mlp_act", "mlp_down",
                     "lm_head", "sampling"]


def test_attention_ops_only_when_present() -> None:
    decode_only = _ops("llama-3.1-8b", ParallelPlan(), BatchShape((1, 1), (5, 7)))
    assert "attn_decode" in decode_only and "attn_prefill" not in decode_only
    prefill_only = _ops("llama-3.1-8b", ParallelPlan(), BatchShape((1, 64), (0, 0)))
    assert "attn_prefill" in prefill_only and "attn_decode" not in prefill_only


def test_tp_adds_two_all_reduces_per_layer() -> None:
    ops = _ops("llama-2-70b", ParallelPlan(tp=4))
    reduces = ops["tp_all_reduce"]
    assert len(reduces) == 2
    assert all(op.calls == 80 and op.group == 4 and op.kind is OpKind.ALL_REDUCE for op in reduces)
    assert reduces[0].bytes_moved == 302 * 8192 * 2
    assert "tp_all_reduce" not in _ops("llama-2-70b", ParallelPlan())


def test_pp_runs_all_layers_plus_send_recv() -> None:
    ops = _ops("llama-2-70b", ParallelPlan(pp=4))
    assert ops["mlp_down"][0].calls == 80
    (send,) = ops["pp_send_recv"]
    assert send.calls == 3 and send.kind is OpKind.SEND_RECV


def test_moe_operators_and_layer_split() -> None:
    ops = _ops("deepseek-v3", ParallelPlan(tp=8))
    assert ops["mlp_gate_up"][0].calls == 3
    assert all(ops[name][0].calls == 58 for name in ("moe_router", "moe_experts", "moe_shared_experts", "moe_combine"))
    assert "ep_all_to_all" not in ops


def test_ep_adds_dispatch_and_combine() -> None:
    ops = _ops("qwen3-30b-a3b", ParallelPlan(tp=4, ep=4))
    assert len(ops["ep_all_to_all"]) == 2 and ops["ep_all_to_all"][0].calls == 48
    with pytest.raises(ValueError, match="ep > 1 needs a MoE model and must divide tp"):
        OperatorBuilder(load_model("llama-2-7b"), ParallelPlan(tp=2, ep=2))
    with pytest.raises(ValueError, match="must divide tp"):
        OperatorBuilder(load_model("mixtral-8x7b"), ParallelPlan(tp=2, ep=4))


def test_expected_touched_experts() -> None:
    model = load_model("mixtral-8x7b")
    builder = OperatorBuilder(model, ParallelPlan())
    expert_bytes = builder.params.expert * 2

    def weight_bytes(tokens: int) -> float:
        op = next(op for op in builder.token_ops(tokens) if op.name == "moe_experts")
        return op.bytes_moved - tokens * 2 * (2 * 4096 + 3 * 14336) * 2

    assert weight_bytes(1) == pytest.approx(2 * expert_bytes)
    assert weight_bytes(2) == pytest.approx(8 * (1 - (1 - 2 / 8) ** 2) * expert_bytes)
    assert weight_bytes(1000) == pytest.approx(8 * expert_bytes)


def test_mla_decode_reads_the_compressed_cache() -> None:
    model = load_model("deepseek-v3")
    for tp in (1, 8):
        work = OperatorBuilder(model, ParallelPlan(tp=tp)).attention
        heads = 128 // tp
        assert work.decode_position_bytes == (512 + 64) * 2
        assert work.decode_pair_flops == 2 * heads * (512 + 64) + 2 * heads * 512


def test_gqa_attention_work() -> None:
    builder = OperatorBuilder(load_model("llama-3.1-8b"), ParallelPlan(tp=2))
    flops, nbytes = builder.attention.decode(3, 300)
    assert flops == 4 * 16 * 128 * 303
    assert nbytes == 303 * 2 * 4 * 128 * 2 + 3 * 2 * 16 * 128 * 2


def test_every_entry_samples() -> None:
    ops = _ops("llama-3.1-8b", ParallelPlan(tp=2))
    assert ops["lm_head"][0].flops == 2 * 3 * 4096 * 128256 // 2


def test_a_decode_reads_at_least_a_kv_tile() -> None:
    model, plan = load_model("llama-3.1-8b"), ParallelPlan(tp=2)
    plain = OperatorBuilder(model, plan).attention
    tiled = OperatorBuilder(model, plan, decode_tile_positions=128).attention
    position = 2 * 4 * 128 * 2  # K and V, 4 KV heads per device, head_dim 128, bf16
    assert tiled.decode(3, 300)[1] - plain.decode(3, 300)[1] == 3 * 128 * position
    assert tiled.decode(3, 300)[0] == plain.decode(3, 300)[0] and tiled.prefill(5, 7) == plain.prefill(5, 7)
    fp8 = OperatorBuilder(model.served_in(kv_dtype="fp8"), plan, decode_tile_positions=128).attention
    assert fp8.decode_position_bytes == position / 2
