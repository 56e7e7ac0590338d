"""`simrun validate-real` on bad run folders: exit 2, one paragraph naming the file/row/key, nothing written."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.bad_inputs.harness import assert_user_error, simrun_in_process, tree

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "real_run_sample"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(SAMPLE, target)
    return target


def _check(run_dir: Path, capsys, *fragments: str, extra: tuple[str, ...] = ("--hardware", "l40s")) -> None:
    out = run_dir.parent / "out"
    before = tree(run_dir.parent)
    outcome = simrun_in_process(["validate-real", str(run_dir), "-o", str(out), *extra], capsys)
    assert_user_error(outcome, *fragments)
    assert tree(run_dir.parent) == before


def test_a_folder_without_a_request_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    _check(tmp_path / "empty", capsys, "no request file", "requests.csv", "vllm_requests.jsonl")


def test_a_missing_folder(tmp_path: Path, capsys) -> None:
    _check(tmp_path / "nowhere", capsys, "not a directory")


def _edit_requests(run_dir: Path, edit) -> None:
    path = run_dir / "requests.csv"
    table = pd.read_csv(path, dtype={"prefix_hashes": str})
    edit(table).to_csv(path, index=False)


def test_a_missing_column_is_named(run_dir: Path, capsys) -> None:
    _edit_requests(run_dir, lambda t: t.drop(columns="finish_s"))
    _check(run_dir, capsys, "requests.csv", "missing column", "finish_s")


def test_a_row_finishing_before_its_first_token_is_named(run_dir: Path, capsys) -> None:
    def edit(table: pd.DataFrame) -> pd.DataFrame:
        table["finish_s"] = table["finish_s"].astype(object)
        table.loc[2, "finish_s"] = 0.0001
        return table

    _edit_requests(run_dir, edit)
    _check(run_dir, capsys, "requests.csv", "row 2", "finish_s", "before")


def test_a_fractional_token_count_is_named(run_dir: Path, capsys) -> None:
    def edit(table: pd.DataFrame) -> pd.DataFrame:
        table["prompt_tokens"] = table["prompt_tokens"].astype(float)
        table.loc[0, "prompt_tokens"] = 12.5
        return table

    _edit_requests(run_dir, edit)
    _check(run_dir, capsys, "row 0", "prompt_tokens", "whole number")


def test_non_integer_prefix_hashes_are_named(run_dir: Path, capsys) -> None:
    def edit(table: pd.DataFrame) -> pd.DataFrame:
        table.loc[3, "prefix_hashes"] = "12 ab 7"
        return table

    _edit_requests(run_dir, edit)
    _check(run_dir, capsys, "row 3", "prefix_hashes", "integers")


def test_a_missing_engine_file(run_dir: Path, capsys) -> None:
    (run_dir / "engine.yaml").unlink()
    _check(run_dir, capsys, "engine.yaml", "missing")


def test_an_unknown_engine_key_is_named(run_dir: Path, capsys) -> None:
    (run_dir / "engine.yaml").write_text((run_dir / "engine.yaml").read_text() + "max_seqs: 4\n")
    _check(run_dir, capsys, "engine.yaml", "max_seqs")


def test_a_repeated_engine_key_is_named(run_dir: Path, capsys) -> None:
    text = (run_dir / "engine.yaml").read_text()
    first_key = text.splitlines()[0].split(":")[0]
    (run_dir / "engine.yaml").write_text(text + f"{first_key}: again\n")
    _check(run_dir, capsys, "engine.yaml", first_key)


def test_a_repeated_key_in_a_jsonl_request_row_is_named(run_dir: Path, capsys) -> None:
    table = pd.read_csv(run_dir / "requests.csv")
    (run_dir / "requests.csv").unlink()
    lines = table.to_json(orient="records", lines=True).splitlines()
    lines[1] = lines[1].replace("{", '{"prompt_tokens":1,', 1)
    (run_dir / "requests.jsonl").write_text("\n".join(lines) + "\n")
    _check(run_dir, capsys, "requests.jsonl", "line 2", "prompt_tokens")


def test_a_gpu_without_a_catalog_entry_says_how_to_replay_it(run_dir: Path, capsys) -> None:
    text = (run_dir / "engine.yaml").read_text().replace("hardware: RTXPRO6000", "hardware: Imaginary GPU 9000")
    (run_dir / "engine.yaml").write_text(text)
    _check(run_dir, capsys, "imaginary gpu 9000", "no catalog entry", "--hardware", extra=())


def test_an_unknown_override_hardware(run_dir: Path, capsys) -> None:
    _check(run_dir, capsys, "--hardware", "no-such-gpu", extra=("--hardware", "no-such-gpu"))


def test_a_bad_set_override_is_reported_like_run(run_dir: Path, capsys) -> None:
    before = tree(run_dir.parent)
    args = ["validate-real", str(run_dir), "-o", str(run_dir.parent / "out"), "--hardware", "l40s",
            "--set", "engine.async_scheduling=maybe"]
    outcome = simrun_in_process(args, capsys)
    assert_user_error(outcome, "validate-real", "1 problem")
    assert "engine.async_scheduling: Input should be a valid boolean" in outcome.stderr
    assert tree(run_dir.parent) == before


def test_a_zero_cuda_graph_size_is_named(run_dir: Path, capsys) -> None:
    before = tree(run_dir.parent)
    args = ["validate-real", str(run_dir), "-o", str(run_dir.parent / "out"), "--hardware", "l40s",
            "--set", "engine.cuda_graph_sizes=[8, 0]"]
    outcome = simrun_in_process(args, capsys)
    assert_user_error(outcome, "1 problem")
    assert "engine.cuda_graph_sizes.1: Input should be greater than or equal to 1" in outcome.stderr
    assert tree(run_dir.parent) == before


def test_closed_loop_clients_with_an_arrival_process_are_refused(tmp_path: Path, capsys) -> None:
    config = tmp_path / "closed.yaml"
    config.write_text(
        "workload:\n  clients: {concurrency: 4}\n  arrival: {process: poisson, rate: 2}\n"
        "  prompt_tokens: {dist: fixed, value: 64}\n  output_tokens: {dist: fixed, value: 8}\n  num_requests: 10\n"
    )
    before = tree(tmp_path)
    outcome = simrun_in_process(["run", str(config), "-o", str(tmp_path / "out")], capsys)
    assert_user_error(outcome, "closed.yaml", "1 problem")
    assert "remove `arrival`" in outcome.stderr
    assert tree(tmp_path) == before
