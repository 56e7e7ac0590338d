"""The candidates of a placement search: every shape on the budget, in a stable order, as valid configs."""
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.sim.experiment.config import PlanConfig
from servesim.sim.placement.candidates import candidates, cluster_data, shapes
from tests.plan.configs import config_of, tiny_plan


def test_unified_candidates_are_every_plan_and_count_within_the_budget():
    found = shapes(PlanConfig(gpus=4, tp=[1, 2, 4], modes=["unified"]))
    assert [(pools[0].tp, pools[0].replicas) for _, pools in found] == [
        (1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 2), (4, 1)]
    assert {mode for mode, _ in found} == {"unified"}


def test_disaggregated_candidates_pair_a_prefill_pool_with_a_decode_pool():
    found = shapes(PlanConfig(gpus=3, tp=[1, 2], modes=["disaggregated"]))
    labels = [" + ".join(p.describe() for p in pools) for _, pools in found]
    assert labels == [
        "prefill 1 x tp1 + decode 1 x tp1", "prefill 1 x tp1 + decode 2 x tp1", "prefill 1 x tp1 + decode 1 x tp2",
        "prefill 2 x tp1 + decode 1 x tp1", "prefill 1 x tp2 + decode 1 x tp1",
    ]


def test_use_all_gpus_keeps_only_candidates_on_the_whole_budget():
    found = shapes(PlanConfig(gpus=4, tp=[1, 2], pp=[1, 2], use_all_gpus=True))
    assert found
    assert all(sum(p.gpus for p in pools) == 4 for _, pools in found)
    assert ("unified", 1, 2, 2) in [(mode, pools[0].tp, pools[0].pp, pools[0].replicas) for mode, pools in found]


@settings(max_examples=60)
@given(gpus=st.integers(1, 12), tp=st.sets(st.sampled_from([1, 2, 4, 8]), min_size=1),
       pp=st.sets(st.sampled_from([1, 2, 3]), min_size=1), all_gpus=st.booleans())
def test_every_shape_within_the_budget_is_a_candidate_exactly_once(gpus, tp, pp, all_gpus):
    if min(tp) * min(pp) > gpus:
        return  # refused by the config (tested with the bad inputs)
    plan = PlanConfig(gpus=gpus, tp=sorted(tp), pp=sorted(pp), use_all_gpus=all_gpus)
    found = [(mode, tuple((p.role, p.tp, p.pp, p.replicas) for p in pools)) for mode, pools in shapes(plan)]
    assert len(found) == len(set(found))
    pools = [(t, p, n) for t, p in itertools.product(tp, pp) for n in range(1, gpus + 1) if t * p * n <= gpus]

    def fits(*shape):
        used = sum(t * p * n for t, p, n in shape)
        return used == gpus if all_gpus else used <= gpus

    expected = {("unified", (("unified", *a),)) for a in pools if fits(a)}
    expected |= {("disaggregated", (("prefill", *a), ("decode", *b))) for a in pools for b in pools if fits(a, b)}
    assert set(found) == expected


def test_a_unified_candidate_keeps_the_rest_of_the_config_and_its_other_parallel_keys():
    config = config_of(tiny_plan({"gpus": 4, "tp": [2], "modes": ["unified"]}, cluster={
        "replicas": 3, "parallel": {"tp": 1, "ep": 1}, "router": {"name": "round_robin"}}))
    first = candidates(config)[0]
    assert first.name == "c000" and first.label == "unified 1 x tp2" and first.gpus == 2
    assert first.data["cluster"] == {"router": {"name": "round_robin"}, "replicas": 1,
                                     "parallel": {"tp": 2, "pp": 1, "ep": 1, "ep_across_replicas": False}}
    assert "plan" not in first.data and first.data["name"] == "tiny/c000"
    assert first.data["workload"] == config.model_dump(mode="json", exclude_none=True)["workload"]
    config_of(first.data)  # a runnable config of its own


def test_a_disaggregated_candidate_is_written_in_the_pools_schema():
    data = cluster_data({"cluster": {"replicas": 2, "parallel": {"tp": 1, "pp": 1}, "router": {"name": "x"}}},
                        shapes(PlanConfig(gpus=3, tp=[1], modes=["disaggregated"]))[1][1])
    assert data == {"cluster": {"router": {"name": "x"}, "pools": [
        {"name": "prefill", "role": "prefill", "replicas": 1, "parallel": {"tp": 1, "pp": 1}},
        {"name": "decode", "role": "decode", "replicas": 2, "parallel": {"tp": 1, "pp": 1}},
    ]}}


def test_candidate_names_are_stable_and_zero_padded():
    config = config_of(tiny_plan({"gpus": 8, "tp": [1, 2, 4, 8]}))
    names = [c.name for c in candidates(config)]
    assert names[:2] == ["c000", "c001"] and names == sorted(names) and len(set(names)) == len(names)
    assert [c.name for c in candidates(config)] == names


def test_generated_pools_keep_the_base_pools_settings_of_their_role():
    base = {"cluster": {"parallel": {"tp": 1, "pp": 1, "ep": 1}, "transfer": {"name": "layerwise"}, "pools": [
        {"name": "p", "role": "prefill", "replicas": 1, "hardware": "h100-sxm", "parallel": {"tp": 4, "ep": 2}},
        {"name": "d", "role": "decode", "replicas": 3, "hardware": "a100-80g", "memory": {"block_size": 32},
         "scheduler": {"name": "vllm", "max_num_seqs": 512}},
    ]}}
    pools = shapes(PlanConfig(gpus=4, tp=[2], modes=["disaggregated"]))[0][1]
    assert cluster_data(base, pools)["cluster"] == {"transfer": {"name": "layerwise"}, "pools": [
        {"name": "prefill", "role": "prefill", "replicas": 1, "hardware": "h100-sxm",
         "parallel": {"tp": 2, "pp": 1, "ep": 2}},
        {"name": "decode", "role": "decode", "replicas": 1, "hardware": "a100-80g", "memory": {"block_size": 32},
         "scheduler": {"name": "vllm", "max_num_seqs": 512}, "parallel": {"tp": 2, "pp": 1, "ep": 1}},
    ]}
    unified = shapes(PlanConfig(gpus=4, tp=[2], modes=["unified"]))[0][1]
    assert cluster_data(base, unified)["cluster"]["pools"] == [
        {"name": "unified", "role": "unified", "replicas": 1, "parallel": {"tp": 2, "pp": 1, "ep": 1}}]
