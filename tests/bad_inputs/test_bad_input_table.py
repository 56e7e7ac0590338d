"""The README's promise on a table of bad inputs: `simrun run` exits 2 with one paragraph, no
traceback, and writes nothing.

Rows are grouped by kind (config keys and types, numbers, parallel plans, traces, catalogs,
claims). Many are regressions of issue 7's hostile-user test: inputs that used to end in a
traceback (OverflowError, MemoryError, TypeError), run silently with wrong numbers (infinite
costs, a claim on a key that does not exist, a key given twice) or exhaust memory.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from servesim.sim.experiment.variants import merge
from tests.bad_inputs.harness import assert_user_error, simrun_in_process, simrun_subprocess, tree

BASE: dict[str, Any] = {
    "name": "bad",
    "cost_model": {"kind": "constant", "iteration_s": 0.01},
    "workload": {
        "arrival": {"process": "poisson", "rate": 5.0},
        "prompt_tokens": {"dist": "uniform", "min": 10, "max": 100},
        "output_tokens": {"dist": "uniform", "min": 5, "max": 20},
        "num_requests": 20,
    },
    "output": {"plots": False},
}
CSV_HEADER = "arrival_s,prompt_tokens,output_tokens\n"
HF = {
    "num_hidden_layers": 4, "hidden_size": 768, "num_attention_heads": 12, "num_key_value_heads": 4,
    "intermediate_size": 1536, "vocab_size": 1000, "max_position_embeddings": 4096,
}
VARIANTS = {"variants": {"a": {"seed": 1}, "b": {"seed": 2}}}
BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['x'] * 9)}]\n"
    for prev, name in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)


@dataclass(frozen=True)
class Bad:
    """One bad input: a config (BASE merged with `config`, or raw `text`), `--set`s, extra files."""

    label: str
    fragments: tuple[str, ...]
    config: dict[str, Any] = field(default_factory=dict)
    sets: tuple[str, ...] = ()
    text: str | None = None
    files: dict[str, str] = field(default_factory=dict)


def trace(fmt: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"workload": {"trace": {"path": name, "format": fmt, **extra}}}


def hf_model(**changes: Any) -> dict[str, str]:
    return {"config.json": json.dumps({**HF, **changes})}


HF_MODEL = {"model": {"hf_config": "config.json"}}

CONFIG_KEYS_AND_TYPES = [
    Bad("unknown top-level key", ("sedd", "did you mean 'seed'"), {"sedd": 1}),
    Bad("unknown nested key", ("memory.blok_size", "block_size"), {"memory": {"blok_size": 16}}),
    Bad("text for an integer", ("seed",), sets=("seed=abc",)),
    Bad("text for replicas", ("cluster.replicas",), sets=("cluster.replicas=two",)),
    Bad("a key twice at the top", ("'name' appears twice",), text="name: a\nname: b\n" + yaml.safe_dump(
        {k: v for k, v in BASE.items() if k != "name"})),
    Bad("a key twice in a flow mapping", ("'kind' appears twice",),
        text=yaml.safe_dump({k: v for k, v in BASE.items() if k != "cost_model"})
        + "cost_model: {kind: constant, kind: roofline}\n"),
    Bad("a key twice in a --set value", ("--set", "appears twice"), sets=("memory={block_size: 16, block_size: 32}",)),
    Bad("YAML alias bomb", ("aliases",), text=BOMB + "workload: *i\n"),
    Bad("YAML alias bomb in a --set value", ("--set", "aliases"),
        sets=("output.dir=[&a [x,x,x,x,x,x,x,x,x,x], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], "
              "&c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], "
              "&e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d], [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]]",)),
    Bad("malformed YAML", ("malformed yaml", "line"), text="workload: {trace: [\n"),
    Bad("a list at the top", ("top level must be a mapping",), text="- a\n- b\n"),
    Bad("--set without =", ("expected key.path=value",), sets=("seed",)),
    Bad("--set below a value", ("seed is a value",), {"seed": 3}, sets=("seed.x=1",)),
    Bad("trace with path and sample", ("exactly one",),
        {"workload": {"trace": {"path": "t.csv", "sample": "azure_conv"}}}),
    Bad("arrival_unit on an Azure trace", ("arrival_unit",),
        {"workload": {"trace": {"sample": "azure_conv", "format": "azure", "arrival_unit": "ms"}}}),
    Bad("unknown arrival_unit", ("arrival_unit",), trace("csv", "t.csv", arrival_unit="minutes"),
        files={"t.csv": CSV_HEADER + "0,10,5\n"}),
    Bad("unknown cost model kind", ("cost_model.kind",), {"cost_model": {"kind": "magic"}}),
    Bad("gamma without cv", ("cv",), {"workload": {"arrival": {"process": "gamma"}}}),
    Bad("class shares not adding up", ("add up to 1",), {"workload": {"classes": [
        {"name": "a", "share": 0.5}, {"name": "b", "share": 0.2}]}}),
]

NUMBERS = [
    Bad("infinite arrival rate", ("workload.arrival.rate", "finite"), sets=("workload.arrival.rate=.inf",)),
    Bad("NaN arrival rate", ("workload.arrival.rate",), sets=("workload.arrival.rate=.nan",)),
    Bad("infinite iteration time", ("cost_model.iteration_s", "finite"), sets=("cost_model.iteration_s=.inf",)),
    Bad("infinite per-token time", ("cost_model.per_token_s", "finite"), sets=("cost_model.per_token_s=.inf",)),
    Bad("infinite roofline overhead", ("iteration_overhead_s", "finite"),
        sets=("cost_model.iteration_overhead_s=.inf",)),
    Bad("infinite memory overhead", ("memory.overhead_gib", "finite"), sets=("memory.overhead_gib=.inf",)),
    Bad("overhead of 1e300 GiB", ("memory.overhead_gib", "1e+300 gib"), sets=("memory.overhead_gib=1e300",)),
    Bad("overhead above the device", ("memory.overhead_gib", "72.0 gib"), sets=("memory.overhead_gib=100",)),
    Bad("infinite swap space", ("memory.swap_space_gib", "finite"), sets=("memory.swap_space_gib=.inf",)),
    Bad("a million GiB of swap", ("memory.swap_space_gib", "4,096 gib", "at most 512"),
        sets=("memory.swap_space_gib=1000000",)),
    Bad("10^12 KV blocks", ("memory.num_kv_blocks", "at most"), sets=("memory.num_kv_blocks=1000000000000",)),
    Bad("a billion-token block", ("memory.block_size", "largest block"), sets=("memory.block_size=1000000000",)),
    Bad("a billion-token block with a fixed pool", ("memory.num_kv_blocks",),
        sets=("memory.block_size=1000000000", "memory.num_kv_blocks=4")),
    Bad("max_model_len above the context", ("memory.max_model_len", "131,072"),
        sets=("memory.max_model_len=1000000000",)),
    Bad("a million replicas", ("cluster.replicas", "4096"), sets=("cluster.replicas=1000000",)),
    Bad("pools beyond what the simulator holds", ("memory:", "blocks", "cluster.replicas"),
        sets=("cluster.replicas=4000", "memory.num_kv_blocks=10000")),
    Bad("10^12 synthetic requests", ("num_requests", "10,000,000"), sets=("workload.num_requests=1000000000000",)),
    Bad("rate scale of 1e-300", ("arrives at", "rate_scale"), sets=("workload.rate_scale=1e-300",)),
    Bad("a request every 30,000 years", ("arrives at",), sets=("workload.arrival.rate=1e-12",)),
    Bad("infinite TTFT objective", ("slo.ttft_s", "finite"), sets=("slo.ttft_s=.inf",)),
    Bad("NaN attainment target", ("slo.attainment_target",), sets=("slo.attainment_target=.nan",)),
    Bad("infinite class timeout", ("timeout_s", "finite"), {"workload": {"classes": [
        {"name": "a", "share": 1.0, "timeout_s": float("inf")}]}}),
    Bad("infinite gamma cv", ("cv", "finite"), {"workload": {"arrival": {"process": "gamma", "cv": float("inf")}}}),
    Bad("shared prefix of 10^12 tokens", ("shared_prefix.tokens", "max_model_len"),
        {"workload": {"shared_prefix": {"num_groups": 2, "tokens": 10**12}}}),
    Bad("negative seed", ("seed",), sets=("seed=-1",)),
    Bad("zero memory utilisation", ("gpu_memory_utilization",), sets=("memory.gpu_memory_utilization=0",)),
    Bad("memory utilisation above 1", ("gpu_memory_utilization",), sets=("memory.gpu_memory_utilization=1.5",)),
    Bad("infinite rate scale", ("rate_scale", "finite"), sets=("workload.rate_scale=.inf",)),
]

PARALLEL_PLANS = [
    Bad("tp not dividing the heads", ("cluster.parallel.tp", "attention heads"), sets=("cluster.parallel.tp=3",)),
    Bad("tp beyond a node", ("cluster.parallel.tp", "node"), sets=("cluster.parallel.tp=16",)),
    Bad("tp of zero", ("cluster.parallel.tp",), sets=("cluster.parallel.tp=0",)),
    Bad("pp beyond the layers", ("cluster.parallel.pp", "layers"), sets=("cluster.parallel.pp=1000000000",)),
    Bad("tp not dividing the K/V heads", ("cluster.parallel.tp", "k/v heads"), HF_MODEL,
        sets=("cluster.parallel.tp=4",),
        files=hf_model(num_attention_heads=24, num_key_value_heads=6, hidden_size=1536)),
    Bad("tp below the K/V heads, not dividing them", ("cluster.parallel.tp", "k/v heads"), HF_MODEL,
        sets=("cluster.parallel.tp=3",), files=hf_model()),
    Bad("tp not dividing the MLP", ("cluster.parallel.tp", "intermediate size"), HF_MODEL,
        sets=("cluster.parallel.tp=2",), files=hf_model(intermediate_size=1535)),
]

TRACES = [
    Bad("arrivals far from 0 that are no date", ("no date", "arrival_unit"), trace("csv", "t.csv"),
        files={"t.csv": CSV_HEADER + "50000000000,10,5\n50000000001,10,5\n"}),
    Bad("an infinite arrival", ("row 3", "arrival_s"), trace("csv", "t.csv"),
        files={"t.csv": CSV_HEADER + "0,10,5\ninf,10,5\n"}),
    Bad("a negative arrival", ("row 2", "arrival_s"), trace("csv", "t.csv"), files={"t.csv": CSV_HEADER + "-1,10,5\n"}),
    Bad("unsorted arrivals", ("row 3", "sort"), trace("csv", "t.csv"),
        files={"t.csv": CSV_HEADER + "5,10,5\n1,10,5\n"}),
    Bad("a missing column", ("output_tokens",), trace("csv", "t.csv"),
        files={"t.csv": "arrival_s,prompt_tokens\n0,10\n"}),
    Bad("a misspelt column", ("arival_s",), trace("csv", "t.csv"),
        files={"t.csv": "arival_s,prompt_tokens,output_tokens\n0,1,1\n"}),
    Bad("a fractional token count", ("row 2", "prompt_tokens"), trace("csv", "t.csv"),
        files={"t.csv": CSV_HEADER + "0,1.5,5\n"}),
    Bad("an empty trace", ("empty",), trace("csv", "t.csv"), files={"t.csv": ""}),
    Bad("a trace that does not exist", ("no such trace file",), trace("csv", "missing.csv")),
    Bad("a JSONL field twice", ("row 1", "'prompt_tokens' appears twice"), trace("jsonl", "t.jsonl"),
        files={"t.jsonl": '{"arrival_s": 0, "prompt_tokens": 10, "output_tokens": 5, "prompt_tokens": 99}\n'}),
    Bad("a JSONL field twice on a later row", ("row 2", "appears twice"), trace("jsonl", "t.jsonl"),
        files={"t.jsonl": '{"arrival_s": 0, "prompt_tokens": 10, "output_tokens": 5}\n'
                          '{"arrival_s": 1, "prompt_tokens": 10, "output_tokens": 5, "output_tokens": 7}\n'}),
    Bad("a Mooncake field twice", ("'timestamp' appears twice",), trace("mooncake", "t.jsonl"),
        files={"t.jsonl": '{"timestamp": 0, "input_length": 10, "output_length": 5, "timestamp": 5}\n'}),
    Bad("a RAGPulse chunk list twice", ("'sys_prompt' appears twice",), trace("ragpulse", "t.jsonl"),
        files={"t.jsonl": '{"timestamp": "0", "input_length": 10, "output_length": 5, '
                          '"hash_ids": {"sys_prompt": [1], "sys_prompt": [2]}}\n'}),
    Bad("a NaN arrival in JSONL", ("row 1", "arrival_s"), trace("jsonl", "t.jsonl"),
        files={"t.jsonl": '{"arrival_s": NaN, "prompt_tokens": 10, "output_tokens": 5}\n'}),
    Bad("an infinite token count in JSONL", ("row 1", "prompt_tokens"), trace("jsonl", "t.jsonl"),
        files={"t.jsonl": '{"arrival_s": 0, "prompt_tokens": Infinity, "output_tokens": 5}\n'}),
    Bad("a trace scaled beyond 1e9 s", ("arrives at",), trace("csv", "t.csv"), sets=("workload.rate_scale=0.001",),
        files={"t.csv": CSV_HEADER + "0,10,5\n5000000,10,5\n"}),
    Bad("an infinite window end", ("end_s", "finite"),
        {"workload": {"trace": {"sample": "azure_conv", "format": "azure"}, "end_s": float("inf")}}),
]

CATALOGS = [
    Bad("unknown model", ("model", "did you mean"), {"model": "llama-3.1-8"}),
    Bad("unknown hardware", ("hardware", "h100-sxm"), {"hardware": "h100"}),
    Bad("a config.json key twice", ("'num_hidden_layers' appears twice",), HF_MODEL,
        files={"config.json": json.dumps(HF)[:-1] + ', "num_hidden_layers": 40}'}),
    Bad("a missing config.json", ("no such file",), HF_MODEL),
    Bad("NaN vocabulary in config.json", ("vocab_size",), HF_MODEL,
        files={"config.json": json.dumps(HF).replace('"vocab_size": 1000', '"vocab_size": NaN')}),
    Bad("a float layer count", ("num_hidden_layers", "integer"), HF_MODEL, files=hf_model(num_hidden_layers=4.0)),
    Bad("config.json that is not JSON", ("not valid json",), HF_MODEL, files={"config.json": "{num_hidden_layers: 4"}),
    Bad("config.json holding a list", ("json object",), HF_MODEL, files={"config.json": "[1, 2]"}),
    Bad("an unknown dtype", ("torch_dtype",), HF_MODEL, files=hf_model(torch_dtype="int3")),
    Bad("max_model_len above config.json's context", ("memory.max_model_len", "4,096"), HF_MODEL,
        sets=("memory.max_model_len=10000",), files=hf_model()),
    Bad("a model larger than the device", ("does not fit",), {"model": "llama-2-70b", "hardware": "a100-80g"}),
    Bad("a 400-digit vocabulary", ("vocab_size", "401-digit", "2^40"), HF_MODEL,
        files={"config.json": json.dumps(HF).replace('"vocab_size": 1000', '"vocab_size": 1' + "0" * 400)}),
    Bad("a 10^11 vocabulary's activations", ("scheduler", "activations"), HF_MODEL, files=hf_model(vocab_size=10**11)),
    Bad("K/V heads that do not divide the heads", ("num_kv_heads",), HF_MODEL, files=hf_model(num_key_value_heads=8)),
    Bad("a config.json model larger than any device", ("does not fit",), HF_MODEL,
        files=hf_model(num_hidden_layers=10**6)),
]

CLAIMS = [
    Bad("a claim on a percentile summary.json lacks", ("claim.metric", "ttft_s.p95", "did you mean"),
        {**VARIANTS, "claim": {"metric": "ttft_s.p95", "better": "lower", "variant": "a", "baselines": ["b"]}}),
    Bad("a claim on a block of figures", ("claim.metric", "group of figures", "p99"),
        {**VARIANTS, "claim": {"metric": "ttft_s", "better": "lower", "variant": "a", "baselines": ["b"]}}),
    Bad("a claim on a class that does not exist", ("claim.metric", "'gold'"),
        {**VARIANTS,
         "claim": {"metric": "classes.gold.ttft_s.p99", "better": "lower", "variant": "a", "baselines": ["b"]}}),
    Bad("a claim on a text field", ("claim.metric", "run.model"),
        {**VARIANTS, "claim": {"metric": "run.model", "better": "lower", "variant": "a", "baselines": ["b"]}}),
    Bad("a claim about an unknown variant", ("claim", "c"),
        {**VARIANTS, "claim": {"metric": "ttft_s.p99", "better": "lower", "variant": "c", "baselines": ["b"]}}),
    Bad("a claim with no baselines", ("claim.baselines",),
        {**VARIANTS, "claim": {"metric": "ttft_s.p99", "better": "lower", "variant": "a", "baselines": []}}),
    Bad("a claim that is neither lower nor higher", ("claim.better",),
        {**VARIANTS, "claim": {"metric": "ttft_s.p99", "better": "smaller", "variant": "a", "baselines": ["b"]}}),
    Bad("a variant with an infinite number", ("variants.b", "finite"),
        {"variants": {"a": {"seed": 1}, "b": {"cost_model": {"iteration_s": float("inf")}}}}),
]

TABLE = {
    "config keys and types": CONFIG_KEYS_AND_TYPES,
    "numbers": NUMBERS,
    "parallel plans": PARALLEL_PLANS,
    "traces": TRACES,
    "catalogs": CATALOGS,
    "claims": CLAIMS,
}
ROWS = [pytest.param(bad, id=f"{kind}: {bad.label}") for kind, rows in TABLE.items() for bad in rows]


def experiment(changes: dict[str, Any]) -> dict[str, Any]:
    """BASE with `changes` merged in; a trace replaces BASE's synthetic workload."""
    base = dict(BASE)
    if "trace" in changes.get("workload", {}):
        base["workload"] = {}
    return merge(base, changes)


@pytest.mark.parametrize("bad", ROWS)
def test_bad_input_exits_2_with_one_paragraph_and_writes_nothing(bad: Bad, tmp_path: Path, capsys) -> None:
    for name, content in bad.files.items():
        (tmp_path / name).write_text(content)
    config = tmp_path / "experiment.yaml"
    config.write_text(bad.text if bad.text is not None else yaml.safe_dump(experiment(bad.config)))
    before = tree(tmp_path)
    args = ["run", str(config), "-o", str(tmp_path / "results")]
    for item in bad.sets:
        args += ["--set", item]
    outcome = simrun_in_process(args, capsys)
    assert_user_error(outcome)
    paragraph = outcome.stderr.strip()
    assert "\n\n" not in paragraph, paragraph
    for fragment in bad.fragments:  # the paragraph may list several problems, one per line
        assert fragment.lower() in paragraph.lower(), (fragment, paragraph)
    assert tree(tmp_path) == before


def test_the_table_covers_every_kind_with_enough_rows() -> None:
    assert len(ROWS) >= 60
    assert all(len(rows) >= 5 for rows in TABLE.values())


def test_a_yaml_bomb_is_refused_by_a_fresh_interpreter_without_hanging(tmp_path: Path) -> None:
    config = tmp_path / "experiment.yaml"
    config.write_text(BOMB + "workload: *i\n")
    outcome = simrun_subprocess(["run", str(config), "-o", str(tmp_path / "results")], timeout=60)
    assert_user_error(outcome, "aliases")
    assert not (tmp_path / "results").exists()
