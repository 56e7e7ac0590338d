"""The bundled samples: names, files, provenance and size, and that they are faithful excerpts."""
from pathlib import Path

import pandas as pd
import pytest

from servesim.traces import TraceError, list_samples, sample_path

SHARED = Path(__file__).resolve().parents[3] / "shared" / "traces"
DATA = Path(__file__).resolve().parents[2] / "traces" / "data"


def test_list_and_paths():
    assert list_samples() == ["azure_conv", "mooncake_conversation", "sharegpt_lengths"]
    for name in list_samples():
        assert sample_path(name).is_file()


def test_unknown_sample_lists_the_valid_names():
    with pytest.raises(TraceError,
                       match="unknown sample trace 'azure'. Bundled samples: azure_conv, mooncake_conversation"):
        sample_path("azure")


def test_samples_are_documented_and_small():
    source = (DATA / "SOURCE.md").read_text()
    for name in list_samples():
        assert sample_path(name).name in source
    assert "CC BY 4.0" in source and "Splitwise" in source and "Apache-2.0" in source
    assert sum(p.stat().st_size for p in DATA.iterdir()) < 300_000


@pytest.mark.skipif(not SHARED.exists(), reason="the public traces are not present")
def test_samples_are_excerpts_of_the_public_files():
    azure = (SHARED / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv").read_bytes().splitlines(keepends=True)
    assert sample_path("azure_conv").read_bytes() == b"".join(azure[:1201])
    mooncake = (SHARED / "mooncake_fast25" / "conversation_trace.jsonl").read_bytes().splitlines(keepends=True)
    assert sample_path("mooncake_conversation").read_bytes() == b"".join(mooncake[:600])
    full = pd.read_csv(SHARED / "sharegpt_lengths_sarathi" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv")
    expected = full.iloc[::15].head(2000)[["num_prefill_tokens", "num_decode_tokens"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(pd.read_csv(sample_path("sharegpt_lengths")), expected)
