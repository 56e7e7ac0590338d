from pathlib import Path

import pandas as pd
import pytest

from traces import TraceError, list_samples, load_length_table, load_trace, sample_path

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "traces"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="the shared traces folder is not present")


def test_bundled_samples_load_in_canonical_form():
    azure = load_trace(sample_path("azure_conv"), "azure")
    assert len(azure) == 1200 and azure["arrival_s"].iloc[0] == 0.0
    assert azure["arrival_s"].is_monotonic_increasing
    assert list(azure.columns) == ["arrival_s", "prompt_tokens", "output_tokens"]
    assert azure.dtypes["prompt_tokens"] == "int64"
    mooncake = load_trace(sample_path("mooncake_conversation"), "mooncake")
    assert len(mooncake) == 600
    assert mooncake["prefix_hashes"].iloc[0][:2] == (0, 1)
    assert (mooncake["prefix_block_tokens"] == 512).all()
    lengths = load_length_table(sample_path("sharegpt_lengths"))
    assert len(lengths) == 2000 and (lengths >= 1).all().all()
    assert list_samples() == ["azure_conv", "mooncake_conversation", "sharegpt_lengths"]


def test_unknown_sample_and_format_list_the_valid_ones():
    with pytest.raises(TraceError, match="bundled samples: azure_conv, mooncake_conversation, sharegpt_lengths"):
        sample_path("azure")
    with pytest.raises(TraceError, match="formats: azure, csv, jsonl, mooncake, ragpulse"):
        load_trace(sample_path("azure_conv"), "splitwise")


@needs_shared
@pytest.mark.parametrize(
    "relative, fmt, rows, mean_prompt, mean_output",
    [
        ("azure_llm_2023/AzureLLMInferenceTrace_conv.csv", "azure", 19_366, 1154.7, 211.1),
        ("mooncake_fast25/conversation_trace.jsonl", "mooncake", 12_031, 12_035.1, 342.6),
        ("mooncake_fast25/synthetic_trace.jsonl", "mooncake", 3_993, 15_325.5, 149.1),
        ("ragpulse/0_trace.jsonl", "ragpulse", 7_106, 2_943.6, 283.2),
    ],
)
def test_full_public_traces_match_their_published_statistics(relative, fmt, rows, mean_prompt, mean_output):
    table = load_trace(SHARED / relative, fmt)
    assert len(table) == rows
    assert table["prompt_tokens"].mean() == pytest.approx(mean_prompt, abs=0.1)
    assert table["output_tokens"].mean() == pytest.approx(mean_output, abs=0.1)
    assert table["arrival_s"].iloc[0] == 0.0 and table["arrival_s"].is_monotonic_increasing


@needs_shared
def test_ragpulse_is_sorted_and_keeps_sessions_and_chunk_ids():
    table = load_trace(SHARED / "ragpulse" / "0_trace.jsonl", "ragpulse")
    assert table["arrival_s"].iloc[-1] == pytest.approx(604_603, abs=1)
    assert table["session_id"].nunique() == 3_990
    assert all(len(ids) >= 3 for ids in table["prefix_hashes"].head(100))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_azure_bad_token_count_names_row_and_column(tmp_path):
    path = write(tmp_path, "a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,10,5\n2023-11-16 18:15:47.00,abc,5\n")
    with pytest.raises(TraceError, match=r"a\.csv: row 3, column prompt_tokens: expected an integer >= 1, got 'abc'"):
        load_trace(path, "azure")


def test_zero_output_tokens_is_rejected_with_its_row(tmp_path):
    path = write(tmp_path, "a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,10,0\n")
    with pytest.raises(TraceError, match="row 2, column output_tokens"):
        load_trace(path, "azure")


def test_missing_column_is_named(tmp_path):
    path = write(tmp_path, "a.csv", "TIMESTAMP,ContextTokens\n2023-11-16 18:15:46.68,10\n")
    with pytest.raises(TraceError, match="missing column.*GeneratedTokens"):
        load_trace(path, "azure")


def test_bad_json_line_is_named(tmp_path):
    path = write(tmp_path, "m.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 3}\n{"timestamp": 1, \n')
    with pytest.raises(TraceError, match=r"m\.jsonl: row 2: not valid JSON"):
        load_trace(path, "mooncake")


def test_unsorted_canonical_csv_names_the_first_backwards_row(tmp_path):
    path = write(tmp_path, "t.csv", "arrival_s,prompt_tokens,output_tokens\n0,5,5\n2,5,5\n1,5,5\n")
    with pytest.raises(TraceError, match="row 4, column arrival_s: 1.0 is earlier than the row before"):
        load_trace(path, "csv")


def test_canonical_csv_with_optional_columns(tmp_path):
    path = write(
        tmp_path, "t.csv",
        "arrival_s,prompt_tokens,output_tokens,priority,slo_class,prefix_hashes\n0,5,5,1,chat,1 2 3\n0.5,7,2,0,batch,1 2\n",
    )
    table = load_trace(path, "csv")
    assert table["prefix_hashes"].tolist() == [(1, 2, 3), (1, 2)]
    assert table["priority"].tolist() == [1, 0]


def test_unknown_column_and_missing_file(tmp_path):
    path = write(tmp_path, "t.csv", "arrival_s,prompt_tokens,output_tokens,colour\n0,5,5,red\n")
    with pytest.raises(TraceError, match="unknown column.*colour"):
        load_trace(path, "csv")
    with pytest.raises(TraceError, match="no such trace file"):
        load_trace(tmp_path / "nope.csv", "csv")


def test_jsonl_canonical_round_trip(tmp_path):
    frame = pd.DataFrame({"arrival_s": [0.0, 1.5], "prompt_tokens": [3, 4], "output_tokens": [1, 2]})
    path = tmp_path / "t.jsonl"
    frame.to_json(path, orient="records", lines=True)
    pd.testing.assert_frame_equal(load_trace(path, "jsonl"), frame)
