"""Readers for real serving runs: per-request timings and the engine settings they ran under.

Two layouts are read (see the README, "Validating against real runs"):

- `real_vllm_runs`: `vllm_requests.jsonl` (engine-clock `queued_ts`, `first_token_ts`,
  `last_token_ts`), `vllm_meta.json` (engine arguments), optionally `config.json` (which names
  the GPU when the meta does not), `vllm_timeseries.csv`, and the request file the meta names
  (`dataset_path`, with `input_tok_ids`: the prompts' block hashes for prefix caching).
- neutral: `requests.csv` or `requests.jsonl` with `arrival_s, prompt_tokens, output_tokens,
  first_token_s, finish_s` (seconds, one clock) and optionally `prefix_hashes` (hash ids of the
  prompt's full KV blocks; space-separated in a CSV), and `engine.yaml` or `engine.json`.

Both become one `RealRun`: times in seconds from the first arrival, as the engine saw them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from servesim.hwmodels.strict_parsing import DuplicateKeyError, load_yaml, unique_keys, yaml_problem
from servesim.sim.errors import UserInputError

REQUEST_COLUMNS = ("arrival_s", "prompt_tokens", "output_tokens", "first_token_s", "finish_s")
VLLM_REQUESTS = "vllm_requests.jsonl"
VLLM_META = "vllm_meta.json"


class RealRunError(UserInputError):
    """A run directory that cannot be read: the message names the file, row or key."""


class EngineSettings(BaseModel):
    """The engine settings of a real run (the neutral layout's `engine.yaml`)."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(description="model name: a catalog name or a HuggingFace id listed in names.yaml")
    hardware: str = Field(description="GPU name: a catalog name or a device name listed in names.yaml")
    tp: int = Field(1, ge=1, description="tensor-parallel degree of each replica")
    dp: int = Field(1, ge=1, description="data-parallel replicas behind the server's load balancer")
    ep: int = Field(1, ge=1, description="expert-parallel degree (with dp > 1: experts split over the DP ranks, "
                                         "`cluster.parallel.ep_across_replicas`)")
    max_num_seqs: int | None = Field(None, ge=1, description="the engine's sequence budget")
    max_num_batched_tokens: int | None = Field(None, ge=1, description="the engine's token budget per step")
    block_size: int = Field(16, ge=1, description="tokens per KV block")
    num_gpu_blocks: int | None = Field(None, ge=1, description="KV blocks per replica as the engine reported them")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="share of device memory used")
    max_model_len: int | None = Field(None, ge=1, description="longest prompt + output accepted")
    dtype: str = Field("bfloat16", description="weight and activation dtype")
    engine: str = Field("vllm", description="serving engine and version, e.g. `vllm 0.19.0`")
    async_scheduling: bool | None = Field(None, description="whether the engine scheduled one step ahead")
    cudagraph_capture_sizes: list[int] | None = Field(None, description="decode batch sizes with captured graphs")
    prefix_caching: bool | None = Field(None, description="whether the engine reused cached prompt prefixes")
    link_gbps: float | None = Field(None, gt=0, description="bandwidth (GB/s per direction) of the link between "
                                    "the run's GPUs, as recorded for its box")
    link_latency_us: float | None = Field(None, ge=0, description="latency of that link per collective step")
    latencies_from: Literal["arrival", "pickup"] = Field(
        "arrival", description="what the real latencies count from: the request's arrival at the engine, or the "
                               "step boundary at which the engine's loop took it in (vLLM's `queued_ts`)")


@dataclass(frozen=True)
class RealRun:
    """One real run: its requests (times from the first arrival) and its engine settings."""

    name: str
    settings: EngineSettings
    requests: pd.DataFrame
    timeseries: pd.DataFrame | None = None


def read_run(run_dir: Path) -> RealRun:
    """Read `run_dir` in whichever layout it has; fail naming the files a layout needs."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RealRunError(f"{run_dir}: not a directory; give the folder of one real run")
    if (run_dir / VLLM_REQUESTS).is_file():
        return _read_vllm(run_dir)
    if any((run_dir / f"requests.{ext}").is_file() for ext in ("csv", "jsonl")):
        return _read_neutral(run_dir)
    raise RealRunError(
        f"{run_dir}: no request file found. A real run needs either {VLLM_REQUESTS} and {VLLM_META} "
        "(the real_vllm_runs layout) or requests.csv / requests.jsonl with columns "
        f"{', '.join(REQUEST_COLUMNS)} and engine.yaml (the neutral layout; see the README)"
    )


def _read_vllm(run_dir: Path) -> RealRun:
    raw = _read_jsonl(run_dir / VLLM_REQUESTS)
    needed = ("input_toks", "output_toks", "queued_ts", "first_token_ts", "last_token_ts")
    _require_columns(raw, needed, run_dir / VLLM_REQUESTS)
    origin = float(raw["queued_ts"].min())
    table = pd.DataFrame({
        "arrival_s": raw["queued_ts"] - origin,
        "prompt_tokens": raw["input_toks"],
        "output_tokens": raw["output_toks"],
        "first_token_s": raw["first_token_ts"] - origin,
        "finish_s": raw["last_token_ts"] - origin,
    })
    meta_path = run_dir / VLLM_META
    if not meta_path.is_file():
        raise RealRunError(f"{meta_path}: missing; the real_vllm_runs layout needs the engine's meta file")
    meta = _read_json(meta_path)
    settings = _settings(_vllm_settings(meta, run_dir), meta_path)
    hashes = _dataset_hashes(run_dir, meta.get("dataset_path"), raw["input_toks"].tolist(), settings.block_size)
    if hashes is not None:
        table["prefix_hashes"] = hashes
    series_path = run_dir / "vllm_timeseries.csv"
    series = pd.read_csv(series_path) if series_path.is_file() else None
    return RealRun(_run_name(run_dir), settings, _checked(table, run_dir / VLLM_REQUESTS), series)


def _vllm_settings(meta: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The neutral settings from vLLM's meta file (and config.json for the GPU when the meta lacks it)."""
    kwargs = meta.get("engine_kwargs", {})
    kv = meta.get("kv_cache") or {}
    resolved = meta.get("resolved_config") or {}
    scheduler = resolved.get("scheduler_config") or {}
    compilation = resolved.get("compilation_config") or {}
    cluster = _cluster(run_dir)
    hardware = (meta.get("hardware") or {}).get("device_name") or _hardware_from_cluster(cluster)
    dp = int(kwargs.get("data_parallel_size") or 1)
    settings = {
        "model": meta.get("model") or kwargs.get("model"),
        "hardware": hardware,
        "tp": kwargs.get("tensor_parallel_size") or 1,
        "dp": dp,
        "ep": dp * int(kwargs.get("tensor_parallel_size") or 1) if kwargs.get("enable_expert_parallel") else 1,
        "max_num_seqs": kwargs.get("max_num_seqs"),
        "max_num_batched_tokens": kwargs.get("max_num_batched_tokens"),
        "block_size": kv.get("block_size") or 16,
        "num_gpu_blocks": kv.get("num_gpu_blocks"),
        "gpu_memory_utilization": kv.get("gpu_memory_utilization"),
        "max_model_len": kwargs.get("max_model_len"),
        "dtype": kwargs.get("dtype") or "bfloat16",
        "engine": f"vllm {meta.get('vllm_version', '')}".strip(),
        "async_scheduling": scheduler.get("async_scheduling"),
        "cudagraph_capture_sizes": compilation.get("cudagraph_capture_sizes"),
        "prefix_caching": kv.get("enable_prefix_caching"),
        "link_gbps": cluster.get("link_bw"),
        "link_latency_us": None if cluster.get("link_latency") is None else cluster["link_latency"] / 1000,
        "latencies_from": "pickup",
    }
    return {key: value for key, value in settings.items() if value is not None}


def _dataset_hashes(run_dir: Path, dataset: str | None, prompt_tokens: list[int], block_size: int) -> list | None:
    """Block hashes of each prompt from the run's request file (found beside the run or up to two
    folders above it), when its rows match the run's requests one for one; else None."""
    if not dataset:
        return None
    bases = (run_dir, *run_dir.resolve().parents[:2])
    path = next((base / dataset for base in bases if (base / dataset).is_file()), None)
    if path is None:
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    ids = [row.get("input_tok_ids") for row in rows]
    if len(ids) != len(prompt_tokens) or any(not isinstance(t, list) or len(t) != n
                                             for t, n in zip(ids, prompt_tokens, strict=True)):
        return None
    return [block_hashes(tokens, block_size) for tokens in ids]


def block_hashes(token_ids: list[int], block_size: int) -> tuple[int, ...]:
    """Chained hashes of the full blocks of a prompt (each block's hash covers every block before it)."""
    hashes = []
    parent = b""
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        block = np.asarray(token_ids[start:start + block_size], dtype=np.int64).tobytes()
        parent = hashlib.sha256(parent + block).digest()
        hashes.append(int.from_bytes(parent[:8], "big") >> 1)
    return tuple(hashes)


def _cluster(run_dir: Path) -> dict[str, Any]:
    """LLMServingSim's description of the run's box (`config.json` beside the run; empty if absent):
    the GPU label and the link between the GPUs (`link_bw` GB/s, `link_latency` ns)."""
    path = run_dir / "config.json"
    if not path.is_file():
        return {}
    cluster = _read_json(path)
    for key in ("link_bw", "link_latency"):
        value = cluster.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0
                                  or (key == "link_bw" and value == 0)):
            raise RealRunError(f"{path}: `{key}` must be a positive number ({'GB/s' if key == 'link_bw' else 'ns'}), "
                               f"got {value!r}; fix it or remove the key to keep the catalog's link")
    return cluster


def _hardware_from_cluster(cluster: dict[str, Any]) -> str | None:
    """The GPU label of LLMServingSim's cluster description, if it names one."""
    for node in cluster.get("nodes", []):
        for instance in node.get("instances", []):
            if instance.get("hardware"):
                return str(instance["hardware"])
    return None


def _read_neutral(run_dir: Path) -> RealRun:
    csv_path, jsonl_path = run_dir / "requests.csv", run_dir / "requests.jsonl"
    path = csv_path if csv_path.is_file() else jsonl_path
    try:
        table = pd.read_csv(path, dtype={"prefix_hashes": str}) if path.suffix == ".csv" else _read_jsonl(path)
    except (ValueError, pd.errors.ParserError) as exc:
        raise RealRunError(f"{path}: cannot be parsed ({exc})") from None
    _require_columns(table, REQUEST_COLUMNS, path)
    table = table[[c for c in (*REQUEST_COLUMNS, "prefix_hashes") if c in table.columns]].copy()
    if "prefix_hashes" in table.columns:
        table["prefix_hashes"] = [_hash_ids(cell, path, row) for row, cell in enumerate(table["prefix_hashes"])]
    origin = float(table["arrival_s"].min())
    for column in ("arrival_s", "first_token_s", "finish_s"):
        table[column] = table[column] - origin
    candidates = (run_dir / f"engine.{ext}" for ext in ("yaml", "yml", "json"))
    settings_path = next((found for found in candidates if found.is_file()), None)
    if settings_path is None:
        raise RealRunError(f"{run_dir}: engine.yaml (or engine.json) is missing; "
                           "it names the model, hardware and limits")
    try:
        raw = load_yaml(settings_path.read_text())
    except yaml.YAMLError as exc:
        raise RealRunError(f"{settings_path}: not valid YAML/JSON ({yaml_problem(exc)})") from None
    return RealRun(_run_name(run_dir), _settings(raw, settings_path), _checked(table, path))


def _hash_ids(cell: Any, path: Path, row: int) -> tuple[int, ...]:
    if isinstance(cell, list):
        values = cell
    elif isinstance(cell, str):
        values = cell.split()
    elif cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return ()
    else:
        values = [cell]
    try:
        return tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise RealRunError(f"{path}: row {row}: `prefix_hashes` must be integers (space-separated in a CSV)") from None


def _settings(raw: Any, path: Path) -> EngineSettings:
    if not isinstance(raw, dict):
        raise RealRunError(f"{path}: must be a mapping of engine settings (model, hardware, tp, ...)")
    try:
        return EngineSettings(**raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise RealRunError(f"{path}: {problems}") from None


def _checked(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Numbers, whole token counts, and times in order within each request; sorted by arrival."""
    for column in REQUEST_COLUMNS:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() | ~np.isfinite(values)
        if bad.any():
            raise RealRunError(f"{path}: row {int(np.argmax(bad.to_numpy()))}: `{column}` is not a finite number")
        table[column] = values
    for column in ("prompt_tokens", "output_tokens"):
        bad = (table[column] < 1) | (table[column] != table[column].round())
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise RealRunError(f"{path}: row {row}: `{column}` must be a whole number >= 1, "
                               f"got {table[column].iloc[row]}")
        table[column] = table[column].astype(np.int64)
    for early, late in (("arrival_s", "first_token_s"), ("first_token_s", "finish_s")):
        bad = table[late] < table[early]
        if bad.any():
            raise RealRunError(f"{path}: row {int(np.argmax(bad.to_numpy()))}: `{late}` is before `{early}`")
    if table.empty:
        raise RealRunError(f"{path}: no requests")
    return table.sort_values("arrival_s", kind="stable").reset_index(drop=True)


def _require_columns(table: pd.DataFrame, columns: tuple[str, ...], path: Path) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise RealRunError(f"{path}: missing column(s) {', '.join(missing)}; "
                           f"found {', '.join(map(str, table.columns))}")


def _read_jsonl(path: Path) -> pd.DataFrame:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line, object_pairs_hook=unique_keys))
            except json.JSONDecodeError as exc:
                raise RealRunError(f"{path}: line {number} is not JSON ({exc.msg})") from None
            except DuplicateKeyError as exc:
                raise RealRunError(f"{path}: line {number}: {exc}") from None
    return pd.DataFrame(rows)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(), object_pairs_hook=unique_keys)
    except json.JSONDecodeError as exc:
        raise RealRunError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except DuplicateKeyError as exc:
        raise RealRunError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise RealRunError(f"{path}: must be a JSON object")
    return data


def _run_name(run_dir: Path) -> str:
    """The run's folder and its parent's (e.g. RTX4090/Llama-3.1-8B): GPU and model in the shipped layout."""
    run_dir = run_dir.resolve()
    return f"{run_dir.parent.name}/{run_dir.name}" if run_dir.parent.name else run_dir.name


def write_neutral(run: RealRun, run_dir: Path, fmt: str = "csv") -> None:
    """Write `run` in the neutral layout (requests file and engine.yaml), e.g. to share a run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    table = run.requests.copy()
    if fmt == "csv":
        if "prefix_hashes" in table.columns:
            table["prefix_hashes"] = [" ".join(map(str, hashes)) for hashes in table["prefix_hashes"]]
        table.to_csv(run_dir / "requests.csv", index=False)
    else:
        table.to_json(run_dir / "requests.jsonl", orient="records", lines=True)
    settings = run.settings.model_dump(exclude_none=True)
    (run_dir / "engine.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))


def find_runs(root: Path) -> list[Path]:
    """Every run folder under `root` (one with a request file of either layout), sorted."""
    found = {p.parent for name in (VLLM_REQUESTS, "requests.csv", "requests.jsonl") for p in Path(root).rglob(name)}
    return sorted(found)
