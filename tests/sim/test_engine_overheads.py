"""The engine's own time: CUDA-graph padding, CPU terms, asynchronous scheduling, the API path."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.hwmodels import BatchShape, ConstantCostModel, ParallelPlan, RooflineCostModel, load_hardware, load_model
from servesim.hwmodels.cost_model import CostModel, IterationCost
from servesim.hwmodels.shapes import LayerSlice
from servesim.policies import create_policy
from servesim.sim.engine.cluster import Cluster
from servesim.sim.engine.kv_memory import BlockPool
from servesim.sim.engine.overheads import ApiServerPath, EngineOverheadCostModel, fitted_overheads, vllm_capture_sizes
from servesim.sim.engine.replica import Replica, ReplicaSetup
from servesim.sim.engine.request import Request
from servesim.sim.experiment.loading import validate_config
from servesim.sim.reporting.metrics import MetricsRecorder
from servesim.sim.runner import prepare, run_experiment


def test_vllm_default_capture_sizes() -> None:
    sizes = vllm_capture_sizes(256)
    assert sizes[:5] == (1, 2, 4, 8, 16) and sizes[-3:] == (480, 496, 512)
    assert len(sizes) == 51  # the list vLLM 0.19 resolved for max_num_seqs=256 (the RTX 4090 run's meta)
    assert vllm_capture_sizes(128)[-2:] == (248, 256)
    assert vllm_capture_sizes(1) == (1, 2)


def test_decode_batches_are_padded_to_the_next_captured_size_and_eager_above() -> None:
    model = EngineOverheadCostModel(ConstantCostModel(0.01, 0.001), capture_sizes=(1, 2, 4, 8))
    decode = BatchShape((1,) * 5, (10, 20, 30, 40, 50))
    assert model.iteration_time(decode) == pytest.approx(0.01 + 8 * 0.001)
    assert model.iteration_time(BatchShape((1,) * 9, (10,) * 9)) == pytest.approx(0.01 + 9 * 0.001)
    mixed = BatchShape((1, 1, 100), (10, 20, 0))
    assert model.iteration_time(mixed) == pytest.approx(0.01 + 102 * 0.001)


def test_cpu_terms_add_per_step_and_per_sequence_and_show_in_the_breakdown() -> None:
    model = EngineOverheadCostModel(ConstantCostModel(0.01), per_iteration_s=0.002, per_sequence_s=0.0001)
    batch = BatchShape((1, 1, 64), (5, 9, 0))
    assert model.iteration_time(batch) == pytest.approx(0.01 + 0.002 + 3 * 0.0001)
    assert model.breakdown(batch).seconds == pytest.approx(model.iteration_time(batch))
    assert model.describe()["engine_overheads"]["cpu_per_sequence_s"] == 0.0001


def test_only_steps_that_do_not_replay_a_full_cuda_graph_pay_the_eager_host_time() -> None:
    """A decode-only batch up to the largest capture size is one graph launch; a prefill chunk or
    more decodes than the largest size launch layer by layer and pay `per_eager_iteration_s`."""
    model = EngineOverheadCostModel(ConstantCostModel(0.01, 0.001), capture_sizes=(1, 2, 4, 8),
                                    per_eager_iteration_s=0.005)
    assert model.iteration_time(BatchShape((1,) * 5, (10,) * 5)) == pytest.approx(0.01 + 8 * 0.001)
    assert model.iteration_time(BatchShape((1,) * 9, (10,) * 9)) == pytest.approx(0.01 + 9 * 0.001 + 0.005)
    mixed = BatchShape((1, 1, 100), (10, 20, 0))
    assert model.iteration_time(mixed) == pytest.approx(0.01 + 102 * 0.001 + 0.005)
    assert model.breakdown(mixed).seconds == pytest.approx(model.iteration_time(mixed))
    assert model.breakdown(mixed).by_operator()["engine_cpu_eager_launch"] == pytest.approx(0.005)
    assert model.describe()["engine_overheads"]["cpu_per_eager_iteration_s"] == 0.005
    sliced = BatchShape((1,) * 5, (10,) * 5, (LayerSlice(512, 0, 0, 4),))  # a prompt's layer group beside decodes
    assert not model.runs_as_graph(sliced) and model.graph_padded(sliced) is sliced
    assert model.eager_s(sliced) == 0.005
    without_graphs = EngineOverheadCostModel(ConstantCostModel(0.01), per_eager_iteration_s=0.005)
    assert without_graphs.iteration_time(BatchShape((1,), (10,))) == pytest.approx(0.015)  # every step eager


@settings(max_examples=30)
@given(st.lists(st.integers(1, 4000), min_size=1, max_size=40), st.integers(0, 50), st.integers(1, 20),
       st.sampled_from([0.0, 0.004]))
def test_a_stretch_pays_the_eager_host_time_as_its_steps_do(contexts: list[int], first: int, steps: int,
                                                            eager_s: float) -> None:
    model = EngineOverheadCostModel(ConstantCostModel(0.01, 0.001), vllm_capture_sizes(8),
                                    per_eager_iteration_s=eager_s)
    stretch = model.decode_stretch_times(np.array(contexts), steps, first)
    assert stretch.tolist() == _one_by_one(model, contexts, first, steps)


class _SteppedOnly(CostModel):
    """`inner` priced one iteration at a time: a model without a vectorised stretch (the generic path)."""

    def __init__(self, inner: CostModel) -> None:
        self.inner = inner

    def breakdown(self, batch: BatchShape) -> IterationCost:
        return self.inner.breakdown(batch)

    def iteration_time(self, batch: BatchShape) -> float:
        return self.inner.iteration_time(batch)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


ROOFLINE_8B = RooflineCostModel(load_model("llama-3.1-8b"), load_hardware("h100-sxm"), ParallelPlan())


def _with_overheads(inner: CostModel, overheads: bool) -> CostModel:
    """`inner` alone, or padded to the capture sizes (1, 2, 4, 8, 16) with CPU and eager host terms."""
    if not overheads:
        return inner
    return EngineOverheadCostModel(inner, vllm_capture_sizes(8), per_iteration_s=0.001, per_sequence_s=1e-5,
                                   per_eager_iteration_s=0.004)


def _one_by_one(model: CostModel, contexts: list[int], first: int, steps: int) -> list[float]:
    return [model.iteration_time(BatchShape((1,) * len(contexts), tuple(c + first + k for c in contexts)))
            for k in range(steps)]


@pytest.mark.parametrize("overheads", [False, True])
@pytest.mark.parametrize("size", [1, 3, 8, 13, 16, 17, 40])  # padded, a captured size, above the largest
def test_a_stretch_priced_from_its_context_sum_equals_pricing_step_by_step(size: int, overheads: bool) -> None:
    """The roofline prices a stretch from the batch's size and context sum, the overheads pad that
    sum with the shortest context: the same numbers as pricing each step on its own. A model
    without a vectorised stretch gives exactly its steps' `iteration_time`; the roofline's agrees
    with it to the last bits only, as numpy's vectorised power may round differently from the
    scalar one that `iteration_time` uses."""
    contexts = np.random.default_rng(size).integers(1, 4000, size).tolist()
    first, steps = 7, 20
    fast = _with_overheads(ROOFLINE_8B, overheads)
    stretch = fast.decode_stretch_times(np.array(contexts), steps, first)
    assert stretch.tolist() == [fast.decode_stretch_times(contexts, 1, first + k)[0] for k in range(steps)]
    stepped = _with_overheads(_SteppedOnly(ROOFLINE_8B), overheads)
    one_by_one = _one_by_one(stepped, contexts, first, steps)
    assert stepped.decode_stretch_times(np.array(contexts), steps, first).tolist() == one_by_one
    assert stretch == pytest.approx(one_by_one, rel=1e-12)


def _serve(specs: list[tuple[float, int, int]], async_scheduling: bool,
           api: ApiServerPath | None = None) -> list[Request]:
    env = simpy.Environment()
    metrics = MetricsRecorder()
    requests = [Request(i, *spec) for i, spec in enumerate(specs)]
    rng = np.random.default_rng(0)
    cluster = Cluster(env, create_policy("router", "round_robin", {}, rng=rng), requests, metrics, api=api)
    preemption = create_policy("preemption", "recompute", {}, rng=rng)
    scheduler = create_policy("scheduler", "vllm", {}, preemption=preemption, rng=rng)
    setup = ReplicaSetup(BlockPool(1000, 16), BlockPool(0, 16), 100_000, 0.0, fast_forward=True,
                         async_scheduling=async_scheduling)
    cluster.add_replica(Replica(env, 0, scheduler, ConstantCostModel(1.0), setup, metrics, cluster.next_arrival_s,
                                cluster.request_done))
    env.run()
    return requests


def test_async_scheduling_makes_an_arrival_during_a_step_wait_one_extra_step() -> None:
    specs = [(0.0, 16, 6), (0.5, 16, 2)]
    synchronous = _serve(specs, async_scheduling=False)
    asynchronous = _serve(specs, async_scheduling=True)
    # steps end at 1, 2, 3, ...: synchronously the second request joins step 2 (ends at 2.0)
    assert synchronous[1].first_token_s == 2.0
    # asynchronously step 2 was planned while step 1 ran, before it arrived: it joins step 3
    assert asynchronous[1].first_token_s == 3.0
    assert asynchronous[0].first_token_s == 1.0 and asynchronous[0].finish_s == synchronous[0].finish_s == 6.0


def test_async_scheduling_does_not_delay_an_arrival_at_an_idle_engine() -> None:
    requests = _serve([(0.0, 16, 1), (5.0, 16, 1)], async_scheduling=True)
    assert [r.first_token_s for r in requests] == [1.0, 6.0]


def test_api_server_delays_engine_entry_by_its_inbound_path() -> None:
    api = ApiServerPath(fixed_s=0.25, per_prompt_token_s=0.01)
    requests = _serve([(0.0, 50, 1), (10.0, 100, 1)], async_scheduling=False, api=api)
    assert [r.first_scheduled_s for r in requests] == [pytest.approx(0.75), pytest.approx(11.25)]
    assert requests[1].arrival_s == 10.0


def _config(**engine) -> dict:
    return {
        "model": "llama-3.1-8b", "hardware": "h100-sxm", "engine": engine,
        "workload": {"arrival": {"process": "poisson", "rate": 4.0}, "prompt_tokens": {"dist": "fixed", "value": 512},
                     "output_tokens": {"dist": "fixed", "value": 64}, "num_requests": 60},
        "output": {"plots": False},
    }


def test_engine_defaults_follow_vllm_and_every_piece_switches_off() -> None:
    on = run_experiment(validate_config(_config(cpu_per_iteration_s=0.002)))
    off = run_experiment(validate_config(_config(version="none", async_scheduling=False, cuda_graphs=False,
                                                 api_server=False)))
    assert on.summary["run"]["cost_model"]["engine_overheads"]["cuda_graph_max_size"] == 512
    assert "engine_overheads" not in off.summary["run"]["cost_model"]  # nothing to add: the bare kernel model
    assert on.summary["tpot_s"]["mean"] > off.summary["tpot_s"]["mean"] + 0.0019


def test_the_constant_cost_model_stays_an_idealised_server() -> None:
    config = validate_config({**_config(), "cost_model": {"kind": "constant", "iteration_s": 0.01}})
    prepared = prepare(config)
    assert isinstance(prepared.cost_model, ConstantCostModel) and prepared.api is None


def test_fitted_sets_fall_back_to_the_engine_default() -> None:
    assert fitted_overheads("no-such-gpu", "vllm-0.19") == fitted_overheads("default", "vllm-0.19")
    assert fitted_overheads("h100-sxm", "none").cpu_per_iteration_s == 0.0
    assert fitted_overheads("h100-sxm", "none").cpu_per_eager_iteration_s == 0.0


def test_the_eager_step_term_defaults_to_the_fitted_set_and_a_config_overrides_it() -> None:
    fitted = fitted_overheads("h100-sxm", "vllm-0.19").cpu_per_eager_iteration_s
    described = prepare(validate_config(_config())).cost_model.describe()["engine_overheads"]
    assert described["cpu_per_eager_iteration_s"] == fitted
    overridden = prepare(validate_config(_config(cpu_per_eager_iteration_s=0.003))).cost_model
    assert overridden.describe()["engine_overheads"]["cpu_per_eager_iteration_s"] == 0.003


def test_api_server_terms_shift_latencies_as_the_client_sees_them() -> None:
    base = {"version": "none", "async_scheduling": False, "cuda_graphs": False}
    engine_side = run_experiment(validate_config(_config(**base, api_server=False))).requests
    client_side = run_experiment(validate_config(_config(**base, api_fixed_s=0.01, api_per_prompt_token_s=1e-5,
                                                         api_stream_out_s=0.02))).requests
    inbound = 0.01 + 512 * 1e-5
    # equal prompts: the same engine timeline shifted by the inbound path, seen later by the stream-out delay
    assert client_side["ttft_s"].to_numpy() == pytest.approx(engine_side["ttft_s"].to_numpy() + inbound + 0.02)
    assert client_side["tpot_s"].to_numpy() == pytest.approx(engine_side["tpot_s"].to_numpy())
    assert client_side["queue_s"].to_numpy() == pytest.approx(engine_side["queue_s"].to_numpy() + inbound)
