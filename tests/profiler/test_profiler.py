"""The profiler on CPU with the quick grid: kernels are correct, tables are complete and readable."""
import math

import pytest

torch = pytest.importorskip("torch")

from servesim.hwmodels import BatchShape, ParallelPlan, load_hardware, load_model  # noqa: E402
from servesim.hwmodels.tables import TableCostModel, read_tables  # noqa: E402
from servesim.profiler import ops  # noqa: E402
from servesim.profiler.profile import ProfileRequest, profile  # noqa: E402
from servesim.profiler.timing import Timer  # noqa: E402

gpu = pytest.mark.gpu


def naive_attention(q, k, v, context):
    """q [n, H, d] after `context` cached positions; k, v [context + n, Hkv, d]."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1).float(), v.repeat_interleave(groups, 1).float()
    scores = torch.einsum("qhd,khd->hqk", q.float(), k) / math.sqrt(q.shape[-1])
    n, total = q.shape[0], k.shape[0]
    allowed = torch.arange(total)[None, :] <= (context + torch.arange(n))[:, None]
    return torch.einsum("hqk,khd->qhd", scores.masked_fill(~allowed, -math.inf).softmax(-1), v)


def paged(k, v, block_size=4):
    """A shuffled paged cache holding k, v [length, Hkv, d], and its block table."""
    blocks = -(-k.shape[0] // block_size)
    order = torch.randperm(blocks + 3)[:blocks]
    k_cache = torch.zeros(blocks + 3, block_size, *k.shape[1:])
    v_cache = torch.zeros_like(k_cache)
    slots = order.repeat_interleave(block_size)[: k.shape[0]] * block_size + torch.arange(k.shape[0]) % block_size
    ops.kv_cache_write(k, v, k_cache, v_cache, slots)
    return k_cache, v_cache, order


def test_paged_attention_kernels_match_naive_attention():
    torch.manual_seed(0)
    q, k, v = torch.randn(5, 4, 8), torch.randn(12, 2, 8), torch.randn(12, 2, 8)
    k_cache, v_cache, table = paged(k, v)
    out = ops.attention_prefill(q, k_cache, v_cache, table[None], [(5, 7)])
    assert torch.allclose(out, naive_attention(q, k, v, 7), atol=1e-5)
    decode = ops.attention_decode(q[:1], k_cache, v_cache, table[None], [11])
    assert torch.allclose(decode, naive_attention(q[:1], k, v, 11), atol=1e-5)


def test_moe_kernels_route_every_token_to_its_top_k_experts():
    torch.manual_seed(0)
    x = torch.randn(6, 8)
    gate_up, down = [torch.randn(2 * 4, 8) for _ in range(3)], [torch.randn(8, 4) for _ in range(3)]
    weights, experts = ops.moe_route(x, torch.randn(3, 8), top_k=2)
    outputs, rows = ops.moe_experts(x, experts, gate_up, down)
    combined = ops.moe_combine(outputs, rows, weights, 6)
    expected = sum(weights[:, j:j + 1] * torch.stack([
        ops.linear(ops.silu_and_mul(ops.linear(x[t:t + 1], gate_up[int(experts[t, j])])), down[int(experts[t, j])])[0]
        for t in range(6)]) for j in range(2))
    assert torch.allclose(combined, expected, atol=1e-4)


def test_timer_takes_the_median_on_cpu():
    calls = []
    seconds = Timer(torch.device("cpu"), warmup=2, repeats=5).seconds(calls.append)
    assert calls == list(range(7)) and 0 <= seconds < 0.01


def test_quick_profile_writes_complete_tables_the_cost_model_reads(tmp_path):
    path = profile(ProfileRequest("tiny-llama", "cpu", quick=True), tmp_path / "t", progress=False)
    tables = read_tables(path)
    operators = set(tables.frame["operator"])
    assert {"attn_qkv_proj", "attn_out_proj", "mlp_gate_up", "mlp_act", "mlp_down", "input_norm", "post_norm",
            "attn_rope", "kv_cache_write", "embedding", "lm_head", "sampling", "attn_prefill", "attn_decode",
            "kv_block_copy", "kv_swap_in", "kv_swap_out", "cpu_overhead", "cpu_overhead_prefill"} <= operators
    meta = tables.metadata
    assert meta["hardware"] == "cpu" and meta["model"] == "tiny-llama" and meta["dtype"] == "bf16"
    assert meta["torch_version"] == torch.__version__ and meta["num_threads"] == 1 and meta["source"] is None
    model = TableCostModel(load_model("tiny-llama"), load_hardware("cpu"), ParallelPlan(), tables, str(path))
    assert model.roofline_operators == []
    assert 0 < model.iteration_time(BatchShape((16, 1), (0, 16))) < 1


def test_quick_profile_of_a_moe_model_at_two_tp_degrees(tmp_path):
    tables = read_tables(profile(ProfileRequest("tiny-moe", "cpu", tp=(1, 2), quick=True), tmp_path / "t",
                                 progress=False))
    assert tables.tp_degrees == [1, 2]
    assert {"moe_router", "moe_experts", "moe_combine"} <= set(tables.frame["operator"])
    assert "cpu_overhead" not in set(tables.frame["operator"])  # the reference engine runs dense models only


@gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_quick_profile_on_cuda_uses_events_and_pinned_swaps(tmp_path):
    tables = read_tables(profile(ProfileRequest("tiny-llama", "cuda", quick=True, hardware="h100-sxm"),
                                 tmp_path / "t", progress=False))
    assert "NVIDIA" in tables.metadata["device_name"] or tables.metadata["device_name"]
    swaps = tables.frame[tables.frame["operator"] == "kv_swap_in"]
    assert len(swaps) and (swaps["time_s"] > 0).all()
