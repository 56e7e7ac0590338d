"""Running the reference engine: requests from a workload table, warm-up, then serving.

Shared by `simrun profile` (the overhead calibration) and `simrun fidelity` (the comparison).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from servesim.hwmodels import CostModel
from servesim.hwmodels.model_spec import ModelSpec
from servesim.policies import create_policy
from servesim.profiler.engine import EngineRequest, IterationRecord, ReferenceEngine
from servesim.profiler.model import ReferenceModel

MAX_CACHE_BYTES = 8 << 30
WARMUP_SHAPES = ((64, 0), (1, 64))


def requests_from_workload(workload: pd.DataFrame, spec: ModelSpec, seed: int = 0) -> list[EngineRequest]:
    """One engine request per workload row (arrival_s, prompt_tokens, output_tokens), random prompt ids."""
    rng = np.random.default_rng(seed)
    rows = zip(workload["arrival_s"].to_numpy(float), workload["prompt_tokens"].to_numpy(int),
               workload["output_tokens"].to_numpy(int), strict=True)
    return [
        EngineRequest(i, float(arrival_s), int(prompt), int(output),
                      token_ids=rng.integers(0, spec.vocab_size, int(prompt)).tolist())
        for i, (arrival_s, prompt, output) in enumerate(rows)
    ]


def calibration_requests(spec: ModelSpec, count: int, seed: int) -> list[EngineRequest]:
    """`count` requests with varied prompts (16-384 tokens) and outputs (4-48 tokens): the first
    half 150 ms apart (lone prefills, batches of one to a few decodes), the rest 10 ms apart
    (mixed batches, batches of a dozen and more)."""
    rng = np.random.default_rng(seed)
    gaps = np.where(np.arange(count) < count // 2, 0.15, 0.01)
    workload = pd.DataFrame({
        "arrival_s": np.cumsum(gaps) - gaps[0],
        "prompt_tokens": rng.integers(16, 385, count),
        "output_tokens": rng.integers(4, 49, count),
    })
    return requests_from_workload(workload, spec, seed)


def run_engine(
    spec: ModelSpec, requests: list[EngineRequest], device: torch.device, dtype: torch.dtype, num_blocks: int,
    block_size: int, scheduler: Mapping[str, Any], cost_model: CostModel | None = None, scheduler_name: str = "vllm",
    preemption: tuple[str, Mapping[str, Any]] = ("recompute", {}), max_model_len: int | None = None, seed: int = 0,
) -> list[IterationRecord]:
    """Build the model and the scheduler, warm up, serve `requests` in real time; the iterations."""
    cache = ReferenceModel.cache_bytes(spec, num_blocks, block_size, dtype)
    if cache > MAX_CACHE_BYTES:
        raise ValueError(f"the reference engine's KV cache would take {cache / 2**30:.1f} GiB ({num_blocks} blocks); "
                         "set memory.num_kv_blocks to a smaller pool")
    model = ReferenceModel(spec, device, dtype, num_blocks, block_size, seed)
    policy = create_policy("scheduler", scheduler_name, dict(scheduler),
                           preemption=create_policy("preemption", preemption[0], dict(preemption[1])))
    engine = ReferenceEngine(model, policy, num_blocks, max_model_len or spec.max_position_embeddings, cost_model)
    model.warm_up(getattr(policy.params, "max_num_batched_tokens", 8192), getattr(policy.params, "max_num_seqs", 256))
    _warm_up(engine)
    return engine.serve(requests)


def _warm_up(engine: ReferenceEngine) -> None:
    """A few untimed iterations so first-call costs (allocation, lazy initialisation) stay out."""
    warm = ReferenceEngine(engine.model, engine.scheduler, engine.kv.num_blocks, engine.max_model_len)
    warm.serve([EngineRequest(-1 - i, 0.0, prompt, 8, token_ids=[1] * prompt)
                for i, (prompt, _) in enumerate(WARMUP_SHAPES)])
