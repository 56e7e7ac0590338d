"""The split policies on hand-made views: no SimPy, a predictor given as a formula."""
import numpy as np
import pytest

from servesim.policies import SplitView, create_policy


def predictor(prefill_full_s: float = 0.1, decode_full_s: float = 0.01, saturation: float = 0.4,
              contention_per_prefill_share: float = 0.0):
    """Prefill scales as 1/share; decode is flat above `saturation` and slows as prefill grows."""

    def predict(shares):
        shares = np.asarray(shares, dtype=float)
        decode_share = 1 - shares
        prefill_s = prefill_full_s / shares
        slowdown = 1 + contention_per_prefill_share * shares
        decode_s = decode_full_s * np.maximum(1, saturation / decode_share) * slowdown
        return prefill_s, decode_s

    return predict


def view(share=0.5, prefill_tokens=2048, num_decodes=32, queued=2048, **model):
    return SplitView(share, prefill_tokens, num_decodes, queued, predictor(**model))


def split_policy(name, **params):
    return create_policy("split", name, params, rng=np.random.default_rng(0))


def test_static_keeps_its_share_whatever_the_load():
    policy = split_policy("static", prefill_share=0.7)
    for state in (view(), view(prefill_tokens=0), view(num_decodes=0)):
        assert policy.prefill_share(state, 0.0) == 0.7


def test_static_share_must_leave_both_phases_some_sms():
    from servesim.policies import PolicyError
    with pytest.raises(PolicyError, match="prefill_share"):
        split_policy("static", prefill_share=1.0)


def test_proactive_gives_an_idle_phase_nothing():
    policy = split_policy("proactive")
    assert policy.prefill_share(view(prefill_tokens=0, queued=0), 0.0) == 0.0
    assert policy.prefill_share(view(num_decodes=0), 0.0) == 1.0


def test_proactive_leaves_decode_its_saturation_share_and_gives_prefill_the_rest():
    # Decode is flat above 40% of the SMs: prefill gets the other 60% (the largest share at the best TBT).
    policy = split_policy("proactive", tbt_tolerance=0.0)
    assert policy.prefill_share(view(share=0.05), 0.0) == pytest.approx(0.6)


def test_proactive_trades_prefill_share_for_tbt_only_as_far_as_the_ttft_budget_allows():
    # Contention makes decode slower the more SMs prefill has: the best TBT is at the smallest
    # prefill share that still drains the queue within the budget: 2048 tokens in 0.1/s s -> s >= 0.2.
    policy = split_policy("proactive", ttft_budget_s=0.5, tbt_tolerance=0.0)
    state = view(share=0.9, queued=2048, contention_per_prefill_share=0.5)
    assert policy.prefill_share(state, 0.0) == pytest.approx(0.2)


def test_proactive_drains_as_fast_as_it_can_when_no_share_keeps_the_pace():
    policy = split_policy("proactive", ttft_budget_s=0.01)
    assert policy.prefill_share(view(queued=10**6), 0.0) == pytest.approx(0.95)


def test_proactive_keeps_a_share_that_is_still_good_enough():
    policy = split_policy("proactive", ttft_budget_s=0.5, tbt_tolerance=0.2)
    contended = dict(contention_per_prefill_share=0.5)
    # The best TBT is 0.011 s (prefill share 0.2); within 20% of it: shares 0.2 to 0.6.
    assert policy.prefill_share(view(share=0.3, **contended), 0.0) == 0.3  # kept
    # At 0.7 decode takes 0.018 s: the split moves to the largest good share.
    assert policy.prefill_share(view(share=0.7, **contended), 0.0) == pytest.approx(0.6)


def test_proactive_searches_shares_on_its_grid():
    policy = split_policy("proactive", share_step=0.25, tbt_tolerance=0.0)
    assert policy.prefill_share(view(share=0.05), 0.0) == pytest.approx(0.5)
