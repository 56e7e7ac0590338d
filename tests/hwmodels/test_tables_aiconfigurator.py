"""Tables from AIConfigurator's measured vLLM kernels: round trip, selection, provenance,
composition across parallel plans, and counted out-of-grid fallbacks."""
import json
import os
import warnings
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servesim.hwmodels import BatchShape, ParallelPlan, RooflineCostModel, load_hardware, load_model
from servesim.hwmodels.errors import CatalogError
from servesim.hwmodels.tables import TableCostModel, TableRangeWarning, list_shipped, load_shipped
from servesim.hwmodels.tables.aiconfigurator import GPUS, Conversion, GpuData, gemm_operators, gemm_times
from servesim.hwmodels.tables.shipped import shipped_root

REFERENCE = Path(os.environ.get("SERVESIM_REFERENCE", Path(__file__).resolve().parents[3] / "shared" / "reference"))
AIC = REFERENCE / "aiconfigurator_perf"
needs_reference = pytest.mark.skipif(not AIC.is_dir(), reason=f"{AIC} is not present (reference data not checked out)")


def table_model(hardware: str, model: str, plan: ParallelPlan, **options) -> TableCostModel:
    tables, label = load_shipped(hardware, model, "aiconfigurator")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TableRangeWarning)
        return TableCostModel(load_model(model), load_hardware(hardware), plan, tables, label, **options)


def test_every_gpu_ships_the_dense_and_moe_models_with_provenance():
    shipped = {(h, m) for s, h, m in list_shipped() if s == "aiconfigurator"}
    for hardware in GPUS.values():
        for model in ("llama-3.1-8b", "qwen3-32b", "qwen3-30b-a3b", "mixtral-8x7b"):
            assert (hardware, model) in shipped
    meta = load_shipped("rtx-pro-6000", "qwen3-32b")[0].metadata
    source = meta["source"]
    assert source["key"] == "aiconfigurator" and source["licence"].startswith("Apache-2.0")
    assert source["repository"] == "github.com/ai-dynamo/aiconfigurator" and len(source["commit"]) == 40
    assert any(f.endswith("rtx_pro_6000_server/gemm/gemm_perf.parquet") for f in source["files"])
    assert meta["framework"] == "vLLM 0.19.0" and meta["device_name"].startswith("NVIDIA RTX PRO 6000")
    assert any("interpolated" in d for d in meta["derived"])  # Qwen3-32B's MLP widths are off the GEMM grid
    root = shipped_root() / "aiconfigurator"
    assert "Apache License" in (root / "LICENSE").read_text() and "NVIDIA" in (root / "NOTICE").read_text()
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total < 4 * 2**20  # the shipped data stay small


@needs_reference
def test_converted_rows_equal_the_source_latencies_at_grid_points():
    tables = load_shipped("h100-sxm", "llama-3.1-8b")[0].frame
    gemm = pd.read_parquet(AIC / "h100_sxm" / "gemm" / "gemm_perf.parquet")
    n, k, _ = gemm_operators(load_model("llama-3.1-8b"), 1)["attn_qkv_proj"]
    for dtype, fmt in (("bf16", "bfloat16"), ("fp8", "fp8")):
        source = gemm[(gemm["gemm_dtype"] == fmt) & (gemm["n"] == n) & (gemm["k"] == k)].set_index("m")["latency"]
        rows = tables[(tables["operator"] == "attn_qkv_proj") & (tables["tp"] == 1) & (tables["dtype"] == dtype)]
        converted = rows.set_index("num_tokens")["time_s"]
        assert len(converted) == len(source) > 50
        assert np.allclose(converted.sort_index().to_numpy() * 1e3, source.sort_index().to_numpy(), rtol=1e-12)
    decode = pd.read_parquet(AIC / "h100_sxm" / "attention" / "generation_attention_perf.parquet")
    point = decode[(decode["num_heads"] == 16) & (decode["num_key_value_heads"] == 4) & (decode["head_dim"] == 128)
                   & (decode["kv_cache_dtype"] == "bfloat16") & (decode["batch_size"] == 32) & (decode["step"] == 1023)
                   & (decode["window_size"] == 0)]
    row = tables[(tables["operator"] == "attn_decode") & (tables["tp"] == 2) & (tables["dtype"] == "bf16")
                 & (tables["num_tokens"] == 32) & (tables["context_len"] == 1023)]
    assert float(row["time_s"].iloc[0]) * 1e3 == pytest.approx(float(point["latency"].iloc[0]), rel=1e-12)


def test_measured_vllm_tables_take_precedence_and_vidur_stays_selectable():
    assert load_shipped("a100-80g", "llama-3.1-8b")[1] == "hwmodels/data/tables/aiconfigurator/a100-80g/llama-3.1-8b"
    vidur, label = load_shipped("a100-80g", "llama-3.1-8b", "vidur")
    assert label.startswith("hwmodels/data/tables/vidur/") and "Vidur" in vidur.describe_source()
    assert load_shipped("cpu", "tiny-llama")[1] == "hwmodels/data/tables/profiled/cpu/tiny-llama"
    with pytest.raises(CatalogError, match="unknown cost-table source 'nope'.*aiconfigurator, vidur, profiled"):
        load_shipped("h100-sxm", "llama-3.1-8b", "nope")


def test_precedence_skips_a_source_without_the_runs_tp():
    tables, label = load_shipped("h100-sxm", "llama-2-70b", tp=2)
    assert 2 in tables.tp_degrees
    assert label.split("/")[3] == ("aiconfigurator" if 2 in load_shipped("h100-sxm", "llama-2-70b")[0].tp_degrees
                                   else "vidur")


def test_the_runs_dtype_picks_its_rows():
    bf16 = table_model("h100-sxm", "llama-3.1-8b", ParallelPlan())
    fp8_spec = load_model("llama-3.1-8b")
    fp8_model = type(fp8_spec)(**{**{f: getattr(fp8_spec, f) for f in fp8_spec.__slots__}, "weight_dtype": "fp8",
                                  "kv_dtype": "fp8"})
    tables, label = load_shipped("h100-sxm", "llama-3.1-8b")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TableRangeWarning)
        fp8 = TableCostModel(fp8_model, load_hardware("h100-sxm"), ParallelPlan(), tables, label)
    batch = BatchShape((2048,), (0,))
    assert fp8.breakdown(batch).by_operator()["mlp_gate_up"] < 0.8 * bf16.breakdown(batch).by_operator()["mlp_gate_up"]
    assert "mlp_gate_up" in fp8.table_operators and "attn_decode" in fp8.table_operators


def test_larger_tp_adds_all_reduces_priced_from_the_measured_collectives():
    batch = BatchShape((1,) * 32, (1024,) * 32)

    def all_reduces(tp: int) -> tuple[int, float, TableCostModel]:
        model = table_model("h100-sxm", "llama-3.1-8b", ParallelPlan(tp=tp))
        ops = [op for op in model.breakdown(batch).operators if op.name == "tp_all_reduce"]
        return sum(op.calls for op in ops), sum(op.seconds for op in ops), model

    calls1, _, tp1 = all_reduces(1)
    calls4, seconds4, tp4 = all_reduces(4)
    assert calls1 == 0 and calls4 == 2 * 32 and "tp_all_reduce" in tp4.table_operators
    per_call = seconds4 / calls4
    assert 2e-6 < per_call < 50e-6  # 256 KiB over NVLink: vLLM's custom all-reduce takes microseconds
    rows = tp4.tables.frame
    measured = rows[(rows["operator"] == "tp_all_reduce") & (rows["num_devices"] == 4)]
    assert set(measured["variant"]) == {"custom_allreduce", "nccl"}
    assert tp4.breakdown(batch).by_operator()["mlp_down"] < tp1.breakdown(batch).by_operator()["mlp_down"]


def test_expert_imbalance_raises_moe_time_and_ep_prices_all_to_all():
    """Skew costs time once experts are compute-bound (a 4k-token prefill); at a few tokens the
    measured skewed routing touches fewer experts and is no slower, so that is not asserted."""
    batch = BatchShape((4096,), (0,))
    times = {}
    for distribution in ("balanced", "power_law_1.2"):
        model = table_model("h100-sxm", "qwen3-30b-a3b", ParallelPlan(tp=4, ep=4), moe_distribution=distribution)
        assert model.describe()["moe_distribution"] == distribution
        times[distribution] = model.iteration_time(batch)
        assert "ep_all_to_all" in model.table_operators and "moe_experts" in model.table_operators
    assert times["power_law_1.2"] > times["balanced"]
    a100 = table_model("a100-80g", "qwen3-30b-a3b", ParallelPlan(tp=2, ep=2))
    assert a100.describe()["moe_distribution"] == "power_law_1.01"  # A100 measured no balanced routing
    with pytest.raises(CatalogError, match="unknown MoE token distribution"):
        table_model("h100-sxm", "qwen3-30b-a3b", ParallelPlan(), moe_distribution="zipf")


def test_out_of_grid_pricings_are_counted_per_operator():
    model = table_model("h100-sxm", "llama-3.1-8b", ParallelPlan())
    assert model.describe()["out_of_grid_calls"] == 0
    for _ in range(3):
        model.iteration_time(BatchShape((512,), (1024,)))  # a chunk after cached context: no such rows
    model.iteration_time(BatchShape((1,) * 4, (200_000,) * 4))  # decode context past the grid
    model.decode_stretch_times(np.array([300_000, 300_000]), 5)
    model.iteration_time(BatchShape((1,) * 4, (1000,) * 4))  # inside: not counted
    described = model.describe()["out_of_grid"]
    assert described["attn_prefill"]["calls"] == 3 and "after 1024" in described["attn_prefill"]["first"]
    assert described["attn_decode"]["calls"] == 1 + 5
    assert model.describe()["out_of_grid_calls"] == 9


def test_llama_8b_decode_on_h100_is_within_2x_of_the_roofline():
    hardware, model = load_hardware("h100-sxm"), load_model("llama-3.1-8b")
    batch = BatchShape((1,) * 32, (1024,) * 32)
    table = table_model("h100-sxm", "llama-3.1-8b", ParallelPlan()).iteration_time(batch)
    roof = RooflineCostModel(model, hardware, ParallelPlan()).iteration_time(batch)
    assert 0.5 < table / roof < 2.0
    assert 0.005 < table < 0.03  # 16 GB of bf16 weights at ~3 TB/s: about 6-10 ms a step


def test_summary_and_headline_name_the_table_set(tmp_path, capsys):
    import yaml

    from servesim.sim.cli import main

    config = {"name": "t", "model": "qwen3-30b-a3b", "hardware": "rtx-pro-6000", "cost_model": {"kind": "table"},
              "cluster": {"parallel": {"tp": 2, "ep": 2}},
              "workload": {"arrival": {"process": "poisson", "rate": 4.0}, "num_requests": 20,
                           "prompt_tokens": {"dist": "fixed", "value": 300},
                           "output_tokens": {"dist": "fixed", "value": 20}},
              "output": {"plots": False}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["run", str(tmp_path / "c.yaml"), "-o", str(tmp_path / "out")]) == 0
    assert "cost tables: hwmodels/data/tables/aiconfigurator/rtx-pro-6000/qwen3-30b-a3b" in capsys.readouterr().out
    run = json.loads((tmp_path / "out" / "summary.json").read_text())["run"]["cost_model"]
    assert run["tables"] == "hwmodels/data/tables/aiconfigurator/rtx-pro-6000/qwen3-30b-a3b"
    assert run["source_key"] == "aiconfigurator" and "vLLM 0.19.0" in run["source"]
    assert run["moe_distribution"] == "balanced" and isinstance(run["out_of_grid_calls"], int)
    assert run["ep"] == 2 and {"ep_all_to_all", "moe_experts", "tp_all_reduce"} <= set(run["table_operators"])


def synthetic_gpu(tmp_path: Path) -> Conversion:
    """A GEMM grid whose latency is exactly c*n*k: log-log blending must reproduce it off the grid."""
    grid = [256, 1024, 4096, 16384]
    rows = [{"gemm_dtype": "bfloat16", "kernel_source": "k", "m": m, "n": n, "k": k, "latency": 1e-9 * m * n * k}
            for m in (4096, 8192) for n in grid for k in grid]
    (tmp_path / "gemm").mkdir()
    pd.DataFrame(rows).to_parquet(tmp_path / "gemm" / "gemm_perf.parquet")
    model, hardware = load_model("llama-3.1-8b"), load_hardware("h100-sxm")
    return Conversion(model, hardware, GpuData(tmp_path), [1], ["bf16"])


def test_gemm_widths_between_and_beyond_the_grid_are_derived_and_noted(tmp_path):
    conv = synthetic_gpu(tmp_path)
    on_grid = gemm_times(conv, 1024, 4096, "bfloat16", 2, "on")
    assert np.allclose(on_grid["time_s"] * 1e3, 1e-9 * on_grid["num_tokens"] * 1024 * 4096)
    between = gemm_times(conv, 2000, 6000, "bfloat16", 2, "between")
    assert np.allclose(between["time_s"] * 1e3, 1e-9 * between["num_tokens"] * 2000 * 6000, rtol=1e-9)
    beyond = gemm_times(conv, 65536, 4096, "bfloat16", 2, "beyond")  # compute-bound: roofline ratio = 4
    assert np.allclose(beyond["time_s"] * 1e3, 1e-9 * beyond["num_tokens"] * 65536 * 4096, rtol=1e-6)
    assert conv.derived[0].startswith("between: n=2000, k=6000 interpolated")
    assert conv.derived[1].startswith("beyond: n=65536, k=4096 beyond the GEMM grid")
    assert gemm_times(conv, 1024, 4096, "fp8", 1, "absent") is None


def test_a_chunk_after_cached_context_is_priced_from_equal_work_fresh_prefills():
    model = table_model("h100-sxm", "llama-3.1-8b", ParallelPlan())
    attention = [model.breakdown(BatchShape((16,), (c,))).by_operator()["attn_prefill"] for c in (0, 1024, 4096, 16384)]
    assert all(a < b for a, b in pairwise(attention))  # more context, more work
    fresh_362 = model.breakdown(BatchShape((362,), (0,))).by_operator()["attn_prefill"]  # 16*4096 + 16*17/2 pairs
    one_decode = model.breakdown(BatchShape((1,), (4096,))).by_operator()["attn_decode"]
    assert attention[2] == pytest.approx(max(fresh_362, one_decode), rel=0.01)
    assert attention[2] < 3 * attention[0]  # not the fresh 16-token time times the context's work
    assert "the same query-key pairs" in model.describe()["out_of_grid"]["attn_prefill"]["first"]


@needs_reference
def test_collectives_are_keyed_by_bytes_though_recorded_in_elements():
    """AIConfigurator's collectors log `message_size` in elements (a [size/4096, 4096] bf16 tensor;
    nccl-tests' bytes // 2): the shipped all-reduce at N bytes is the source's latency at N/2 elements."""
    source = pd.read_parquet(AIC / "rtx_pro_6000_server" / "comm" / "custom_allreduce_perf.parquet")
    source = source[(source["kernel_source"] == "vLLM_custom_graph") & (source["num_gpus"] == 2)]
    rows = load_shipped("rtx-pro-6000", "qwen3-32b", "aiconfigurator")[0].frame
    shipped = rows[(rows["operator"] == "tp_all_reduce") & (rows["num_devices"] == 2)]
    for elements, latency_ms in zip(source["message_size"], source["latency"], strict=True):
        if 2 * elements <= 8 << 20:
            row = shipped[(shipped["num_bytes"] == 2 * elements) & (shipped["variant"] == "custom_allreduce")]
            assert row["time_s"].iloc[0] == pytest.approx(latency_ms / 1e3)
    assert shipped[shipped["variant"] == "nccl"]["num_bytes"].min() > 8 << 20


def test_a_decode_step_all_reduce_on_pcie_is_priced_at_the_hidden_states_bytes():
    """Qwen3-32B TP2 on the RTX PRO 6000 (PCIe): 128 tokens x 5120 x 2 bytes = 1.25 MiB per all-reduce,
    which vLLM's custom all-reduce measured at 0.09-0.16 ms (0.5-1 Mi elements) on that box."""
    model = table_model("rtx-pro-6000", "qwen3-32b", ParallelPlan(tp=2))
    ops = [op for op in model.breakdown(BatchShape((1,) * 128, (700,) * 128)).operators if op.name == "tp_all_reduce"]
    per_call = sum(op.seconds for op in ops) / sum(op.calls for op in ops)
    assert 0.09e-3 < per_call < 0.16e-3
