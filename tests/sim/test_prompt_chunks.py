"""A prompt's known chunks beside running decodes run without a pass over the decodes at each
step (`sim.engine.prompt_chunks`), and change nothing: every request's times, the token gaps,
the per-iteration records, the replica time series (KV blocks at every step) and per-token
times equal those of the run that takes each of these steps on its own."""
from __future__ import annotations

from unittest.mock import patch

import pytest

from servesim.hwmodels import ConstantCostModel
from servesim.sim.engine import prompt_chunks
from servesim.sim.engine import replica as replica_module
from tests.builds import interpreted_only
from tests.sim.test_known_decodes import assert_identical, run_both, steps

pytestmark = interpreted_only  # `run_both` switches the known steps off by patching the replica's module

COST = ConstantCostModel(0.01, 0.001)
BUDGET = {"max_num_batched_tokens": 12, "max_num_seqs": 4}


def runs_taken(specs, **options) -> tuple[list[tuple[int, int]], object, object]:
    """Both runs, and the (steps planned, steps run) of each prompt run the second took."""
    taken = []
    original = prompt_chunks.run_prompt_chunks

    def counted(replica, step):
        plan = prompt_chunks._plan(replica, step)
        done = yield from original(replica, step)
        if plan is not None:
            taken.append((plan.num_steps, done))
        return done

    with patch.object(replica_module, "run_prompt_chunks", counted):
        asked, known = run_both(specs, **options)
    return taken, asked, known


@pytest.mark.parametrize("scheduler_name", ["vllm", "sarathi"])
def test_a_prompts_chunks_run_at_once_beside_decodes(scheduler_name):
    # Two decode while a 40-token prompt arrives; a budget of 12 leaves it 10 tokens a step.
    specs = [(0.0, 4, 30), (0.0, 4, 30), (0.05, 40, 5)]
    taken, asked, known = runs_taken(specs, cost_model=COST, scheduler_name=scheduler_name, scheduler=BUDGET,
                                     record_tokens=True)
    assert_identical(asked, known)
    assert taken == [(4, 4)]  # its admission and three known chunks, the last giving its first token
    assert steps(known) == 2
    assert known.metrics.tokens is not None and asked.metrics.tokens is not None
    assert known.metrics.tokens.close().read_bytes() == asked.metrics.tokens.close().read_bytes()


def test_each_chunk_leaves_its_row_in_the_time_series_with_the_blocks_then():
    # Blocks of 2 tokens: the decodes cross a block boundary every other step, the prompt every step.
    specs = [(0.0, 3, 30), (0.0, 4, 30), (0.05, 40, 5)]
    taken, asked, known = runs_taken(specs, cost_model=COST, scheduler=BUDGET, block_size=2)
    assert_identical(asked, known)
    assert taken == [(4, 4)]
    chunk_rows = known.metrics.replica_series().query("time_s >= 0.05 and batch_tokens > batch_size")
    assert chunk_rows["kv_used_blocks"].is_monotonic_increasing and len(chunk_rows) == 4


def test_an_arrival_during_a_chunk_ends_the_run_after_it():
    specs = [(0.0, 4, 30), (0.0, 4, 30), (0.05, 40, 5), (0.075, 4, 5)]
    for async_scheduling in (False, True):
        taken, asked, known = runs_taken(specs, cost_model=COST, scheduler=BUDGET, async_scheduling=async_scheduling)
        assert_identical(asked, known)
        assert taken[0][1] < taken[0][0], async_scheduling


def test_a_decode_that_finishes_ends_the_run_at_its_last_token():
    specs = [(0.0, 4, 4), (0.0, 4, 30), (0.0, 40, 5)]
    taken, asked, known = runs_taken(specs, cost_model=COST, scheduler=BUDGET)
    assert_identical(asked, known)
    assert known.requests[0].finish_s < known.requests[2].first_token_s
    assert any(done == planned for planned, done in taken)


def test_blocks_that_do_not_fit_end_the_run_for_the_scheduler_to_decide():
    # The pool cannot hold the prompt and both decodes to the end: the scheduler preempts.
    specs = [(0.0, 4, 40), (0.0, 4, 40), (0.05, 40, 5)]
    taken, asked, known = runs_taken(specs, cost_model=COST, scheduler=BUDGET, num_blocks=14, block_size=4)
    assert_identical(asked, known)
    assert any(done < planned for planned, done in taken)
    assert sum(r.num_preemptions for r in known.requests) > 0


@pytest.mark.parametrize(("why", "options"), [
    ("the router reads progress", {"progress_observed": True}),
    ("the scheduler is not trusted", {"scheduler_name": "orca"}),
    ("its blocks go to the prefix cache at each step", {"prefix_caching": True}),
])
def test_no_run_when_the_later_chunks_are_not_known(why, options):
    specs = [(0.0, 4, 30, None, None), (0.0, 4, 30, None, None), (0.05, 40, 5, 1, None)]  # the last shares a prefix
    taken, asked, known = runs_taken(specs, cost_model=COST, **{"scheduler": BUDGET, **options})
    assert_identical(asked, known)
    assert taken == [], why
