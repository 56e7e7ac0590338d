"""The synthetic workload drawn chunk by chunk: the same rows, seed for seed, as drawing it in one go."""
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import servesim.traces.chunked as chunked
from servesim.sim.experiment.loading import validate_config
from servesim.sim.experiment.workload import build_table, build_workload
from servesim.sim.runner import prepare, random_stream, simulate
from servesim.traces import sample_path

LOGNORMAL = {"dist": "lognormal", "mean": 700, "sigma": 0.9, "min": 4, "max": 6000}
CONFIGS = {
    "poisson, lognormal": {"arrival": {"process": "poisson", "rate": 3.0}, "prompt_tokens": LOGNORMAL,
                           "output_tokens": {"dist": "uniform", "min": 1, "max": 300}},
    "gamma, normal and fixed": {"arrival": {"process": "gamma", "rate": 5.0, "cv": 3.0},
                                "prompt_tokens": {"dist": "normal", "mean": 400, "std": 150, "max": 900},
                                "output_tokens": {"dist": "fixed", "value": 17}},
    "constant, empirical values": {"arrival": {"process": "constant", "rate": 7.0},
                                   "prompt_tokens": {"dist": "empirical", "values": [3, 90, 2000]},
                                   "output_tokens": {"dist": "empirical", "sample": "sharegpt_lengths",
                                                     "column": "output_tokens"}},
    "batch, joint table": {"arrival": {"process": "batch"},
                           "prompt_tokens": {"dist": "empirical", "sample": "sharegpt_lengths"},
                           "output_tokens": {"dist": "empirical", "sample": "sharegpt_lengths"}},
    "shared prefixes": {"arrival": {"process": "poisson", "rate": 2.0}, "prompt_tokens": LOGNORMAL,
                        "output_tokens": LOGNORMAL, "shared_prefix": {"num_groups": 9, "tokens": 96, "share": 0.6}},
    "closed loop, rate scaled": {"clients": {"concurrency": 4}, "prompt_tokens": LOGNORMAL,
                                 "output_tokens": {"dist": "fixed", "value": 5}},
}


def config_for(workload: dict, num_requests: int, seed: int = 0, **extra):
    return validate_config({"seed": seed, "cost_model": {"kind": "constant", "iteration_s": 0.002},
                            "workload": {**workload, "num_requests": num_requests, **extra}})


def drawn_in_one_go(workload: dict, n: int, seed: int) -> pd.DataFrame:
    """The rows as servesim drew them before chunking: each stream asked for all n values at once."""
    arrival_rng, prompt_rng, output_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    arrival = workload.get("arrival", {"process": "none"})
    rate, cv = arrival.get("rate", 1.0), arrival.get("cv", 1.0)
    arrivals = {
        "poisson": lambda: np.cumsum(arrival_rng.exponential(1 / rate, n)),
        "gamma": lambda: np.cumsum(arrival_rng.gamma(1 / cv**2, cv**2 / rate, n)),
        "constant": lambda: np.arange(n, dtype=float) / rate,
        "batch": lambda: np.zeros(n),
        "none": lambda: np.zeros(n),
    }[arrival["process"]]()
    sharegpt = pd.read_csv(sample_path("sharegpt_lengths"))
    if workload["prompt_tokens"].get("sample") and "column" not in workload["prompt_tokens"]:
        rows = prompt_rng.integers(0, len(sharegpt), n)
        prompts, outputs = (sharegpt[c].to_numpy()[rows] for c in ("num_prefill_tokens", "num_decode_tokens"))
    else:
        prompts = lengths(workload["prompt_tokens"], n, prompt_rng, sharegpt)
        outputs = lengths(workload["output_tokens"], n, output_rng, sharegpt)
    table = pd.DataFrame({"arrival_s": arrivals, "prompt_tokens": prompts, "output_tokens": outputs})
    if "shared_prefix" in workload:
        spec = workload["shared_prefix"]
        rng = random_stream(seed, 6)
        shared = rng.random(n) < spec["share"]
        groups = rng.integers(0, spec["num_groups"], n)
        blocks = spec["tokens"] // 16
        table["prompt_tokens"] += np.where(shared, spec["tokens"], 0)
        table["prefix_hashes"] = [tuple(g * 2**32 + k for k in range(blocks)) if s else ()
                                  for g, s in zip(groups.tolist(), shared.tolist(), strict=True)]
        table["prefix_block_tokens"] = 16
    return table


def lengths(spec: dict, n: int, rng: np.random.Generator, sharegpt: pd.DataFrame) -> np.ndarray:
    dist = spec["dist"]
    if dist == "fixed":
        return np.full(n, spec["value"])
    if dist == "uniform":
        return rng.integers(spec["min"], spec["max"] + 1, n)
    if dist == "empirical":
        values = spec["values"] if "values" in spec else sharegpt["num_decode_tokens"].to_numpy()
        return rng.choice(values, n)
    if dist == "lognormal":
        draws = rng.lognormal(math.log(spec["mean"]) - spec["sigma"] ** 2 / 2, spec["sigma"], n)
    else:
        draws = rng.normal(spec["mean"], spec["std"], n)
    return np.clip(np.rint(draws), spec.get("min", 1), spec.get("max", 2**40)).astype(np.int64)


def chunked_rows(config, chunk_rows: int, tmp_path) -> list[pd.DataFrame]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chunked, "CHUNK_ROWS", chunk_rows)
        workload = build_workload(config.workload, tmp_path, config.seed, 8192, lambda: random_stream(config.seed, 3))
        return list(workload.chunks())


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 65_536])
def test_chunks_are_the_rows_of_one_draw(tmp_path, name, chunk_rows):
    n, seed = 300, 11
    chunks = chunked_rows(config_for(CONFIGS[name], n, seed), chunk_rows, tmp_path)
    expected = drawn_in_one_go(CONFIGS[name], n, seed)
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), expected, check_dtype=False,
                                  check_exact=True)
    assert [len(c) for c in chunks] == [min(chunk_rows, n - i) for i in range(0, n, chunk_rows)]


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(CONFIGS)), n=st.integers(1, 400), chunk_rows=st.integers(1, 450),
       seed=st.integers(0, 2**31), rate_scale=st.sampled_from([1.0, 3.0]), classes=st.booleans())
def test_the_chunk_size_never_changes_the_workload(tmp_path, name, n, chunk_rows, seed, rate_scale, classes):
    extra = {"classes": [{"name": "a", "share": 0.25}, {"name": "b", "share": 0.75}], "class_by": "share"}
    config = config_for(CONFIGS[name], n, seed, rate_scale=rate_scale, **(extra if classes else {}))
    whole = pd.concat(chunked_rows(config, n, tmp_path), ignore_index=True)
    pd.testing.assert_frame_equal(pd.concat(chunked_rows(config, chunk_rows, tmp_path), ignore_index=True), whole,
                                  check_exact=True)
    table = build_table(config.workload, tmp_path, seed)
    pd.testing.assert_frame_equal(table, whole[table.columns], check_exact=True)


def test_a_synthetic_run_draws_its_requests_a_chunk_at_a_time(monkeypatch):
    """The run gets its requests from chunks, never the whole workload, and the results equal one draw's."""
    config = config_for(CONFIGS["shared prefixes"], 2_000, seed=5)
    whole = simulate(prepare(config))
    sizes: list[int] = []
    real = chunked.CHUNK_ROWS
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 300)
    prepared = prepare(config)
    reading = prepared.workload.read_chunks

    def counted():
        for chunk in reading():
            sizes.append(len(chunk))
            yield chunk

    object.__setattr__(prepared.workload, "read_chunks", counted)
    result = simulate(prepared)
    assert real > 300 and max(sizes) == 300 and sum(sizes) == 2_000
    pd.testing.assert_frame_equal(result.requests, whole.requests, check_exact=True)
    assert {k: v for k, v in result.summary.items() if k != "run"} == {
        k: v for k, v in whole.summary.items() if k != "run"}
