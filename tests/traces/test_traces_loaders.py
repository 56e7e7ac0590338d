"""Each loader on its bundled sample, on the full public file (when present), and on broken files."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servesim.traces import TraceError, load_length_table, load_trace, sample_path

SHARED = Path(__file__).resolve().parents[3] / "shared" / "traces"
AZURE_CONV = SHARED / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
MOONCAKE_CONV = SHARED / "mooncake_fast25" / "conversation_trace.jsonl"
MOONCAKE_SYNTH = SHARED / "mooncake_fast25" / "synthetic_trace.jsonl"
RAGPULSE = SHARED / "ragpulse" / "0_trace.jsonl"
SHAREGPT = SHARED / "sharegpt_lengths_sarathi" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv"
ARXIV = SHARED / "arxiv_summarization_lengths_vidur" / "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv"


def needs(path: Path):
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is not present (public traces not checked out)")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_canonical(table: pd.DataFrame) -> None:
    assert list(table.columns[:3]) == ["arrival_s", "prompt_tokens", "output_tokens"]
    assert table.dtypes["arrival_s"] == np.float64
    assert table.dtypes["prompt_tokens"] == np.int64 and table.dtypes["output_tokens"] == np.int64
    assert table["arrival_s"].iloc[0] == 0.0 and table["arrival_s"].is_monotonic_increasing
    assert (table["prompt_tokens"] >= 1).all() and (table["output_tokens"] >= 1).all()
    assert isinstance(table.index, pd.RangeIndex)


# --- bundled samples -----------------------------------------------------------------------


def test_azure_sample():
    table = load_trace(sample_path("azure_conv"), "azure")
    assert_canonical(table)
    assert len(table) == 1200 and list(table.columns) == ["arrival_s", "prompt_tokens", "output_tokens"]
    assert table["arrival_s"].iloc[-1] == pytest.approx(253.48, abs=0.01)
    assert table[["prompt_tokens", "output_tokens"]].iloc[0].tolist() == [374, 44]
    assert table["arrival_s"].iloc[1] == pytest.approx(4.314579)


def test_mooncake_sample():
    table = load_trace(sample_path("mooncake_conversation"), "mooncake")
    assert_canonical(table)
    assert len(table) == 600
    assert table["prefix_hashes"].iloc[0] == tuple(range(14))
    assert all(type(h) is int for h in table["prefix_hashes"].iloc[1])
    assert (table["prefix_block_tokens"] == 512).all() and table["prefix_block_tokens"].dtype == np.int64
    blocks = np.ceil(table["prompt_tokens"] / 512).astype(int)
    assert (table["prefix_hashes"].map(len) == blocks).all()


def test_sharegpt_sample_length_table():
    lengths = load_length_table(sample_path("sharegpt_lengths"))
    assert list(lengths.columns) == ["prompt_tokens", "output_tokens"] and len(lengths) == 2000
    assert lengths.iloc[0].tolist() == [74, 918]
    assert (lengths.dtypes == np.int64).all() and (lengths >= 1).all().all()


# --- full public files ---------------------------------------------------------------------


@needs(AZURE_CONV)
def test_full_azure_conv_matches_its_published_statistics():
    table = load_trace(AZURE_CONV, "azure")
    assert_canonical(table)
    assert len(table) == 19_366
    assert table["prompt_tokens"].mean() == pytest.approx(1154.7, abs=0.1)
    assert table["output_tokens"].mean() == pytest.approx(211.1, abs=0.1)
    assert table["arrival_s"].iloc[-1] == pytest.approx(3501.7, abs=0.1)
    assert (table["prompt_tokens"].min(), table["prompt_tokens"].max()) == (2, 14_050)
    assert (table["output_tokens"].min(), table["output_tokens"].max()) == (7, 1_000)


@needs(MOONCAKE_CONV)
def test_full_mooncake_conversation_matches_its_published_statistics():
    table = load_trace(MOONCAKE_CONV, "mooncake")
    assert_canonical(table)
    assert len(table) == 12_031
    assert table["prompt_tokens"].mean() == pytest.approx(12_035, abs=1)
    assert table["output_tokens"].mean() == pytest.approx(342.6, abs=0.1)
    assert table["arrival_s"].iloc[-1] == pytest.approx(3537.0, abs=0.1)
    ids = [h for hashes in table["prefix_hashes"] for h in hashes]
    assert (len(ids), len(set(ids))) == (288_500, 182_790)
    assert (table["prefix_hashes"].map(len) == np.ceil(table["prompt_tokens"] / 512)).all()


@needs(MOONCAKE_SYNTH)
def test_full_mooncake_synthetic_matches_its_published_statistics():
    table = load_trace(MOONCAKE_SYNTH, "mooncake")
    assert len(table) == 3_993
    assert table["prompt_tokens"].mean() == pytest.approx(15_325.5, abs=0.1)
    assert table["output_tokens"].mean() == pytest.approx(149.1, abs=0.1)
    assert table["arrival_s"].iloc[-1] == pytest.approx(1022.0, abs=0.1)


@needs(RAGPULSE)
def test_full_ragpulse_is_sorted_with_sessions_and_chunk_ids():
    table = load_trace(RAGPULSE, "ragpulse")
    assert_canonical(table)
    assert len(table) == 7_106
    assert table["prompt_tokens"].mean() == pytest.approx(2_943.6, abs=0.1)
    assert table["output_tokens"].mean() == pytest.approx(283.2, abs=0.1)
    assert table["arrival_s"].iloc[-1] == pytest.approx(604_603)
    assert table["session_id"].nunique() == 3_990
    assert "prefix_block_tokens" not in table.columns
    assert table["prefix_hashes"].map(len).mean() == pytest.approx(3.0 + 4.68 + 1.30 + 0.09 + 1.0, abs=0.02)


@needs(SHAREGPT)
def test_full_sharegpt_length_table():
    lengths = load_length_table(SHAREGPT)
    assert len(lengths) == 30_731
    assert lengths["prompt_tokens"].mean() == pytest.approx(2_340.0, abs=0.1)
    assert lengths["output_tokens"].mean() == pytest.approx(438.7, abs=0.1)


@needs(ARXIV)
def test_full_arxiv_length_table():
    lengths = load_length_table(ARXIV)
    assert len(lengths) == 28_257
    assert lengths["prompt_tokens"].mean() == pytest.approx(2_588.1, abs=0.1)
    assert lengths["output_tokens"].mean() == pytest.approx(291.4, abs=0.1)


# --- options and dispatch ------------------------------------------------------------------


def test_unknown_format_lists_the_formats():
    with pytest.raises(TraceError, match="formats: azure, csv, jsonl, mooncake, parquet, ragpulse"):
        load_trace(sample_path("azure_conv"), "splitwise")


def test_unknown_option_is_refused_with_the_formats_options():
    with pytest.raises(TraceError, match="the azure format has no option.*block_tokens. Its options: none"):
        load_trace(sample_path("azure_conv"), "azure", block_tokens=16)
    with pytest.raises(TraceError, match="Its options: block_tokens"):
        load_trace(sample_path("mooncake_conversation"), "mooncake", block_size=16)


def test_mooncake_block_tokens_option(tmp_path):
    table = load_trace(sample_path("mooncake_conversation"), "mooncake", block_tokens=256)
    assert (table["prefix_block_tokens"] == 256).all()
    with pytest.raises(TraceError, match="block_tokens must be a whole number"):
        load_trace(sample_path("mooncake_conversation"), "mooncake", block_tokens=0)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(TraceError, match="nope.csv: no such trace file"):
        load_trace(tmp_path / "nope.csv", "csv")
    with pytest.raises(TraceError, match="is not a file"):
        load_trace(tmp_path, "azure")
    with pytest.raises(TraceError, match="no such length table"):
        load_length_table(tmp_path / "lengths.csv")


# --- Azure: broken files -------------------------------------------------------------------

AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def test_azure_non_numeric_token_count_names_line_and_column(tmp_path):
    path = write(
        tmp_path, "a.csv", AZURE_HEADER + "2023-11-16 18:15:46.6805900,10,5\n2023-11-16 18:15:47.0000000,abc,5\n"
    )
    with pytest.raises(TraceError, match=r"a\.csv: row 3, column ContextTokens: expected an integer >= 1, got 'abc'\."):
        load_trace(path, "azure")


def test_azure_zero_tokens_names_the_row(tmp_path):
    rows = "".join(f"2023-11-16 18:15:4{i}.0000000,10,{5 if i != 2 else 0}\n" for i in range(4))
    path = write(tmp_path, "a.csv", AZURE_HEADER + rows)
    with pytest.raises(TraceError, match=r"row 4, column GeneratedTokens: expected an integer >= 1, got '0'\. Token"):
        load_trace(path, "azure")


def test_azure_empty_cell_is_named_as_missing(tmp_path):
    path = write(tmp_path, "a.csv", AZURE_HEADER + "2023-11-16 18:15:46.0,10,5\n2023-11-16 18:15:47.0,,5\n")
    with pytest.raises(TraceError, match="row 3, column ContextTokens: .* got an empty value"):
        load_trace(path, "azure")


def test_azure_missing_column_says_which_and_what_was_found(tmp_path):
    path = write(tmp_path, "a.csv", "TIMESTAMP,ContextTokens\n2023-11-16 18:15:46.68,10\n")
    with pytest.raises(TraceError, match=r"missing column\(s\) GeneratedTokens \(found TIMESTAMP, ContextTokens\)"):
        load_trace(path, "azure")


def test_azure_bad_timestamp(tmp_path):
    path = write(tmp_path, "a.csv", AZURE_HEADER + "2023-11-16 18:15:46.68,10,5\nyesterday,10,5\n")
    with pytest.raises(TraceError, match="row 3, column TIMESTAMP: expected a date and time, got 'yesterday'"):
        load_trace(path, "azure")


def test_azure_unsorted_file_is_an_error_naming_the_row(tmp_path):
    path = write(tmp_path, "a.csv", AZURE_HEADER + "2023-11-16 18:15:46.0,10,5\n2023-11-16 18:15:45.0,10,5\n")
    with pytest.raises(TraceError, match="row 3, column TIMESTAMP: arrival 0.0 s is earlier than the row before"):
        load_trace(path, "azure")


def test_azure_blank_lines_do_not_shift_row_numbers(tmp_path):
    path = write(tmp_path, "a.csv", AZURE_HEADER + "2023-11-16 18:15:46.0,10,5\n\n2023-11-16 18:15:47.0,10,-1\n")
    with pytest.raises(TraceError, match="row 4, column GeneratedTokens"):
        load_trace(path, "azure")


def test_empty_and_header_only_files(tmp_path):
    with pytest.raises(TraceError, match="the file is empty"):
        load_trace(write(tmp_path, "e.csv", ""), "azure")
    with pytest.raises(TraceError, match="the trace has no requests"):
        load_trace(write(tmp_path, "h.csv", AZURE_HEADER), "azure")


def test_messages_are_one_paragraph_with_a_fix(tmp_path):
    path = write(tmp_path, "a.csv", AZURE_HEADER + "2023-11-16 18:15:46.0,10,0\n")
    with pytest.raises(TraceError) as caught:
        load_trace(path, "azure")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path)) and message.endswith(".")
    assert "correct the value or remove the row" in message


# --- Mooncake: broken files ----------------------------------------------------------------


def mooncake_line(timestamp, prompt, output, ids="[0]"):
    return f'{{"timestamp": {timestamp}, "input_length": {prompt}, "output_length": {output}, "hash_ids": {ids}}}\n'


def test_mooncake_bad_json_line_is_named(tmp_path):
    path = write(tmp_path, "m.jsonl", mooncake_line(0, 5, 3) + '{"timestamp": 1, \n')
    with pytest.raises(TraceError, match=r"m\.jsonl: row 2: not valid JSON"):
        load_trace(path, "mooncake")


def test_mooncake_line_that_is_not_an_object(tmp_path):
    path = write(tmp_path, "m.jsonl", mooncake_line(0, 5, 3) + "[1, 2]\n")
    with pytest.raises(TraceError, match="row 2: expected a JSON object, got a list"):
        load_trace(path, "mooncake")


def test_mooncake_non_numeric_field_names_row_and_field(tmp_path):
    path = write(tmp_path, "m.jsonl", mooncake_line(0, 5, 3) + mooncake_line(1000, '"many"', 3))
    with pytest.raises(TraceError, match="row 2, field input_length: expected an integer >= 1, got 'many'"):
        load_trace(path, "mooncake")


def test_mooncake_zero_output_and_missing_field(tmp_path):
    path = write(tmp_path, "m.jsonl", mooncake_line(0, 5, 3) + mooncake_line(1000, 5, 0))
    with pytest.raises(TraceError, match="row 2, field output_length: expected an integer >= 1, got 0"):
        load_trace(path, "mooncake")
    path = write(tmp_path, "n.jsonl", mooncake_line(0, 5, 3) + '{"timestamp": 5, "input_length": 4}\n')
    with pytest.raises(TraceError, match="row 2, field output_length: .*got nothing"):
        load_trace(path, "mooncake")
    path = write(tmp_path, "o.jsonl", '{"timestamp": 5, "input_length": 4}\n')
    with pytest.raises(TraceError, match=r"missing field\(s\) output_length"):
        load_trace(path, "mooncake")


def test_mooncake_bad_hash_ids_name_their_own_row(tmp_path):
    text = mooncake_line(0, 5, 3) + mooncake_line(0, 5, 3, "[1, 2]") + mooncake_line(0, 5, 3, "[3, 4.5]")
    with pytest.raises(TraceError,
                       match=r"row 3, field hash_ids: expected a list of integer block hash ids, got \(3, 4.5\)"):
        load_trace(write(tmp_path, "m.jsonl", text), "mooncake")
    text = mooncake_line(0, 5, 3) + mooncake_line(0, 5, 3, '"abc"')
    with pytest.raises(TraceError, match="row 2, field hash_ids: .*got 'abc'"):
        load_trace(write(tmp_path, "n.jsonl", text), "mooncake")


def test_mooncake_timestamps_are_milliseconds_shifted_to_zero(tmp_path):
    path = write(tmp_path, "m.jsonl", mooncake_line(3000, 5, 3) + "\n" + mooncake_line(4500, 600, 2, "[7, 8]"))
    table = load_trace(path, "mooncake")
    assert table["arrival_s"].tolist() == [0.0, 1.5]
    assert table["prefix_hashes"].tolist() == [(0,), (7, 8)]


def test_mooncake_unsorted_is_an_error(tmp_path):
    path = write(tmp_path, "m.jsonl", mooncake_line(3000, 5, 3) + mooncake_line(0, 5, 3))
    with pytest.raises(TraceError, match="row 2, field timestamp: arrival 0.0 s is earlier"):
        load_trace(path, "mooncake")


# --- RAGPulse ------------------------------------------------------------------------------


def ragpulse_line(timestamp, prompt, output, session="s1", ids=None):
    ids = ids or '{"sys_prompt": [1, 2], "passages_ids": [3], "history": [4], "web_search": [], "user_input": [5]}'
    return (
        f'{{"timestamp": "{timestamp}", "input_length": {prompt}, "output_length": {output}, '
        f'"hash_ids": {ids}, "session_id": "{session}"}}\n'
    )


def test_ragpulse_is_sorted_stably_and_shifted(tmp_path):
    text = ragpulse_line(90, 10, 1, "b") + ragpulse_line(82, 11, 2, "a") + ragpulse_line(90, 12, 3, "c")
    table = load_trace(write(tmp_path, "r.jsonl", text), "ragpulse")
    assert table["arrival_s"].tolist() == [0.0, 8.0, 8.0]
    assert table["session_id"].tolist() == ["a", "b", "c"]
    assert table["prompt_tokens"].tolist() == [11, 10, 12]
    assert table["prefix_hashes"].iloc[0] == (1, 2, 3, 4, 5)


def test_ragpulse_components_option_orders_the_chunk_ids(tmp_path):
    path = write(tmp_path, "r.jsonl", ragpulse_line(0, 10, 1))
    table = load_trace(path, "ragpulse", components=["user_input", "sys_prompt"])
    assert table["prefix_hashes"].iloc[0] == (5, 1, 2)
    with pytest.raises(TraceError, match="option components must name each of"):
        load_trace(path, "ragpulse", components=["sys_prompt", "documents"])


def test_ragpulse_errors_name_the_file_line_after_sorting(tmp_path):
    text = ragpulse_line(90, 10, 1) + ragpulse_line(82, 11, 0) + ragpulse_line(95, 12, 3)
    with pytest.raises(TraceError, match="row 2, field output_length: expected an integer >= 1, got 0"):
        load_trace(write(tmp_path, "r.jsonl", text), "ragpulse")


def test_ragpulse_bad_timestamp_and_hash_ids(tmp_path):
    text = ragpulse_line(0, 10, 1) + ragpulse_line("noon", 10, 1)
    with pytest.raises(TraceError, match="row 2, field timestamp: expected a number, got 'noon'"):
        load_trace(write(tmp_path, "r.jsonl", text), "ragpulse")
    text = ragpulse_line(0, 10, 1) + ragpulse_line(1, 10, 1, ids='{"sys_prompt": 7}')
    with pytest.raises(TraceError, match="row 2, field hash_ids: expected sys_prompt to be a list"):
        load_trace(write(tmp_path, "s.jsonl", text), "ragpulse")


# --- canonical CSV and JSON Lines ----------------------------------------------------------


def test_unsorted_canonical_csv_names_the_first_backwards_row(tmp_path):
    path = write(tmp_path, "t.csv", "arrival_s,prompt_tokens,output_tokens\n0,5,5\n2,5,5\n1,5,5\n3,5,5\n0.5,5,5\n")
    with pytest.raises(TraceError,
                       match=r"row 4, column arrival_s: arrival 1\.0 s is earlier than the row before \(2\.0 s\)"):
        load_trace(path, "csv")


def test_canonical_csv_with_every_optional_column(tmp_path):
    path = write(
        tmp_path,
        "t.csv",
        "arrival_s,prompt_tokens,output_tokens,session_id,turn,prefix_hashes,prefix_block_tokens,priority,slo_class,tenant\n"
        "0,5,5,007,0,1 2 3,16,1,chat,acme\n"
        "0.5,7,2,007,1,,16,-2,batch,acme\n",
    )
    table = load_trace(path, "csv")
    assert table["prefix_hashes"].tolist() == [(1, 2, 3), ()]
    assert table["session_id"].tolist() == ["007", "007"]
    assert table["priority"].tolist() == [1, -2] and table["turn"].dtype == np.int64
    assert table["slo_class"].tolist() == ["chat", "batch"]


def test_canonical_csv_bad_cells(tmp_path):
    header = "arrival_s,prompt_tokens,output_tokens,prefix_hashes,slo_class\n"
    with pytest.raises(TraceError, match="row 3, column prefix_hashes: expected space-separated integers, got '1,2'"):
        load_trace(write(tmp_path, "a.csv", header + '0,5,5,1 2,chat\n1,5,5,"1,2",chat\n'), "csv")
    with pytest.raises(TraceError, match="row 2, column slo_class: expected a name, got an empty value"):
        load_trace(write(tmp_path, "b.csv", header + "0,5,5,1 2,\n"), "csv")
    with pytest.raises(TraceError, match="row 2, column arrival_s: expected a number >= 0, got '-1'"):
        load_trace(write(tmp_path, "c.csv", header + "-1,5,5,1,chat\n"), "csv")
    with pytest.raises(TraceError, match="row 2, column prompt_tokens: expected an integer >= 1, got '2.5'"):
        load_trace(write(tmp_path, "d.csv", header + "0,2.5,5,1,chat\n"), "csv")


def test_unknown_column_suggests_the_right_name(tmp_path):
    path = write(tmp_path, "t.csv", "arrival_s,promt_tokens,output_tokens,prompt_tokens\n0,5,5,5\n")
    with pytest.raises(TraceError, match=r"unknown column\(s\) promt_tokens. did you mean 'prompt_tokens'\?"):
        load_trace(path, "csv")


def test_missing_canonical_column(tmp_path):
    path = write(tmp_path, "t.csv", "arrival_s,prompt_tokens\n0,5\n")
    with pytest.raises(TraceError, match=r"missing column\(s\) output_tokens"):
        load_trace(path, "csv")


def test_jsonl_canonical_round_trip(tmp_path):
    frame = pd.DataFrame(
        {
            "arrival_s": [0.0, 1.5],
            "prompt_tokens": [3, 4],
            "output_tokens": [1, 2],
            "prefix_hashes": [(1, 2), (1, 3)],
            "tenant": ["a", "b"],
        }
    )
    path = tmp_path / "t.jsonl"
    frame.to_json(path, orient="records", lines=True)
    loaded = load_trace(path, "jsonl")
    assert loaded["prefix_hashes"].tolist() == [(1, 2), (1, 3)]
    pd.testing.assert_frame_equal(loaded.drop(columns="prefix_hashes"), frame.drop(columns="prefix_hashes"),
                                  check_dtype=False)


def test_jsonl_type_change_mid_file_names_the_row(tmp_path):
    lines = "".join(f'{{"arrival_s": {i}, "prompt_tokens": 5, "output_tokens": 5}}\n' for i in range(5))
    lines += '{"arrival_s": 9, "prompt_tokens": "five", "output_tokens": 5}\n'
    with pytest.raises(TraceError, match="row 6, field prompt_tokens: expected an integer >= 1, got 'five'"):
        load_trace(write(tmp_path, "t.jsonl", lines), "jsonl")


# --- length tables -------------------------------------------------------------------------


def test_length_table_errors(tmp_path):
    with pytest.raises(TraceError, match=r"missing column\(s\) num_prefill_tokens, num_decode_tokens"):
        load_length_table(write(tmp_path, "a.csv", "prompt,output\n5,5\n"))
    with pytest.raises(TraceError, match="row 3, column num_decode_tokens: expected an integer >= 1, got '0'"):
        load_length_table(write(tmp_path, "b.csv", "num_prefill_tokens,num_decode_tokens\n5,5\n6,0\n"))


def test_length_table_reads_canonical_columns(tmp_path):
    path = write(tmp_path, "t.csv", "arrival_s,prompt_tokens,output_tokens\n0,5,6\n1,7,8\n")
    assert load_length_table(path).values.tolist() == [[5, 6], [7, 8]]


def test_unreadable_csv_files_get_one_paragraph(tmp_path):
    with pytest.raises(TraceError, match=r"not a readable CSV file \(.*Expected 3 fields in line 3, saw 4\)") as caught:
        load_trace(write(tmp_path, "r.csv", "arrival_s,prompt_tokens,output_tokens\n0,5,5\n1,5,5,7\n"), "csv")
    assert "\n" not in str(caught.value)
    path = tmp_path / "l.csv"
    path.write_bytes(b"arrival_s,prompt_tokens,output_tokens,tenant\n0,5,5,caf\xe9\n")
    with pytest.raises(TraceError, match="not UTF-8 text"):
        load_trace(path, "csv")


def test_jsonl_with_a_key_inside_a_text_value_is_not_a_repeated_key(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"arrival_s": 0, "prompt_tokens": 10, "output_tokens": 5, '
                    '"session_id": "\\"prompt_tokens\\": 3"}\n')
    assert load_trace(path, "jsonl")["prompt_tokens"].tolist() == [10]


def test_a_repeated_jsonl_key_is_an_error_naming_its_row(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"arrival_s": 0, "prompt_tokens": 10, "output_tokens": 5}\n'
                    '{"arrival_s": 1, "prompt_tokens": 10, "output_tokens": 5, "arrival_s": 2}\n')
    with pytest.raises(TraceError, match=r"row 2: field 'arrival_s' appears twice"):
        load_trace(path, "jsonl")


def test_a_misspelt_required_column_is_named(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokes\n0,1,1\n")
    with pytest.raises(TraceError, match="'output_tokes' looks like 'output_tokens'"):
        load_trace(path, "csv")
