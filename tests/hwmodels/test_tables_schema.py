"""Cost-table files: write and read back equal; every malformed input is a CatalogError naming it."""
import json

import pandas as pd
import pytest

from servesim.hwmodels.errors import CatalogError
from servesim.hwmodels.tables import COLUMNS, read_tables, write_tables
from servesim.hwmodels.tables.schema import METADATA_FILE, OPS_FILE

METADATA = {"hardware": "cpu", "model": "tiny-llama", "device_name": "test", "dtype": "bf16", "date": "2026-01-01",
            "servesim_version": "0"}


def small_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "operator": ["attn_qkv_proj", "attn_qkv_proj", "attn_decode", "tp_all_reduce"],
        "num_tokens": [1, 64, 4, 0], "context_len": [0, 0, 128, 0], "num_bytes": [0, 0, 0, 4096],
        "num_devices": [1, 1, 1, 2], "tp": [1, 1, 1, 2], "dtype": ["bf16"] * 4, "time_s": [1e-5, 3e-5, 2e-5, 7e-6],
    })


def test_round_trip_keeps_rows_and_metadata(tmp_path):
    frame = small_frame()
    write_tables(tmp_path / "t", frame, METADATA)
    tables = read_tables(tmp_path / "t")
    key = ["operator", "tp", "num_devices", "num_tokens", "context_len", "num_bytes"]
    expected = frame.astype(COLUMNS).sort_values(key).reset_index(drop=True)
    read = tables.frame.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(read[list(COLUMNS)], expected)
    assert (read["ep"] == 1).all() and (read["variant"] == "").all()  # optional columns take their defaults
    assert {k: tables.metadata[k] for k in METADATA} == METADATA
    assert tables.metadata["schema_version"] == 1
    assert tables.tp_degrees == [1]


def test_missing_directory_names_it_and_the_fix(tmp_path):
    with pytest.raises(CatalogError, match="no such cost-table directory.*simrun profile"):
        read_tables(tmp_path / "nowhere")


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / OPS_FILE).write_text("not parquet"), "not a readable Parquet file"),
    (lambda d: (d / METADATA_FILE).write_text("{"), "malformed JSON"),
    (lambda d: (d / METADATA_FILE).write_text(json.dumps({"schema_version": 1})), "missing key"),
    (lambda d: (d / OPS_FILE).unlink(), "missing"),
    (lambda d: small_frame().drop(columns="tp").to_parquet(d / OPS_FILE), "missing column"),
    (lambda d: small_frame().assign(time_s=-1.0).to_parquet(d / OPS_FILE), "non-positive time"),
])
def test_malformed_tables_are_reported_with_the_file(tmp_path, damage, message):
    directory = write_tables(tmp_path / "t", small_frame(), METADATA)
    damage(directory)
    with pytest.raises(CatalogError, match=message) as info:
        read_tables(directory)
    assert str(directory) in str(info.value)


def test_optional_columns_round_trip_and_are_checked(tmp_path):
    frame = small_frame().assign(ep=[1, 1, 1, 2], variant=["", "", "", "nccl"])
    write_tables(tmp_path / "t", frame, METADATA)
    read = read_tables(tmp_path / "t").frame
    assert read.loc[read["operator"] == "tp_all_reduce", ["ep", "variant"]].values.tolist() == [[2, "nccl"]]
    with pytest.raises(CatalogError, match="non-positive time or a negative shape"):
        write_tables(tmp_path / "u", frame.assign(ep=0), METADATA)
