"""The cost-table schema shared by the profiler (which writes tables) and hwmodels (which reads them).

A table set is one directory: `ops.parquet`, one tidy row per measured (operator, shape), and
`metadata.json`, what was measured where (device, driver, torch version, dtype, date, project
version, and for converted data its source and licence). Every operator uses the shape columns
that describe it and leaves the others at 0:

- per-token operators (projections, norms, rotary, KV write, MLP, MoE, embedding) and per-entry
  ones (LM head, sampling): `num_tokens` (tokens, or sampled entries);
- `attn_prefill`: `num_tokens` new tokens of one chunk after `context_len` cached ones;
- `attn_decode`: `num_tokens` decodes, each attending to `context_len` cached positions;
- collectives and copies (`tp_all_reduce`, `ep_all_to_all`, `pp_send_recv`, `kv_swap_out`,
  `kv_swap_in`, `kv_block_copy`): `num_bytes` per device among `num_devices`;
- `cpu_overhead`: the host time of an iteration (scheduling, input preparation, Python between
  kernels) by `num_tokens` = batch entries; `cpu_overhead_prefill`: one row, the extra host
  time per prefill chunk in the batch.

`time_s` is seconds per call on one device; `tp` is the tensor-parallel degree whose sharded
shapes were timed (collectives are keyed by `num_devices` instead). `dtype` is the format the
operator ran in: the weights' for weight GEMMs and experts, the KV cache's for attention, the
activations' otherwise; a table may hold several, and the cost model picks the run's.

Two optional columns (filled with their defaults when a table lacks them, so older tables and
the profiler's stay valid): `ep`, the expert-parallel degree of the timed MoE shard (1 unless
experts were split over ranks), and `variant`, the measured condition of rows that would
otherwise collide (for `moe_experts` the token distribution across experts: `balanced`,
`power_law_1.01`, `power_law_1.2`; for collectives the implementation: `custom_allreduce`,
`nccl`); empty when there is one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from servesim.hwmodels.errors import CatalogError

SCHEMA_VERSION = 1
OPS_FILE = "ops.parquet"
METADATA_FILE = "metadata.json"

COLUMNS: dict[str, str] = {
    "operator": "string",
    "num_tokens": "int64",
    "context_len": "int64",
    "num_bytes": "int64",
    "num_devices": "int64",
    "tp": "int64",
    "dtype": "string",
    "time_s": "float64",
}

OPTIONAL_COLUMNS: dict[str, tuple[str, int | str]] = {"ep": ("int64", 1), "variant": ("string", "")}
ALL_COLUMNS: dict[str, str] = {**COLUMNS, **{name: dtype for name, (dtype, _) in OPTIONAL_COLUMNS.items()}}

ATTENTION_OPERATORS = ("attn_prefill", "attn_decode")
BYTE_OPERATORS = ("tp_all_reduce", "ep_all_to_all", "pp_send_recv", "kv_swap_out", "kv_swap_in", "kv_block_copy")
COLLECTIVE_OPERATORS = ("tp_all_reduce", "ep_all_to_all", "pp_send_recv")
OVERHEAD_OPERATOR = "cpu_overhead"
PREFILL_OVERHEAD_OPERATOR = "cpu_overhead_prefill"
REQUIRED_METADATA = ("hardware", "model", "device_name", "dtype", "date", "servesim_version")


@dataclass(frozen=True)
class TableSet:
    """One directory of cost tables: the rows and what they were measured on."""

    frame: pd.DataFrame
    metadata: dict[str, Any]
    path: Path | None = field(default=None, compare=False)

    @property
    def tp_degrees(self) -> list[int]:
        compute = self.frame[~self.frame["operator"].isin(BYTE_OPERATORS)]
        return sorted(int(tp) for tp in compute["tp"].unique())

    def describe_source(self) -> str:
        """One line saying where the numbers come from (device and, for converted data, source)."""
        meta = self.metadata
        source = meta.get("source")
        origin = (f"{source.get('name', 'converted')} ({source.get('licence', '?')})" if isinstance(source, dict)
                  else "servesim profiler")
        return f"{meta.get('device_name', '?')}, {meta.get('dtype', '?')}, {origin}, {meta.get('date', '?')}"


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in ALL_COLUMNS.items()})


def normalise(frame: pd.DataFrame, where: str = "table") -> pd.DataFrame:
    """`frame` with the schema's columns (optional ones filled with their defaults) and types; a
    CatalogError names what is wrong."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise CatalogError(f"{where}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
    extra = [c for c in frame.columns if c not in ALL_COLUMNS]
    if extra:
        raise CatalogError(f"{where}: unknown column(s) {', '.join(map(str, extra))}; "
                           f"expected {', '.join(ALL_COLUMNS)}")
    frame = frame.assign(**{name: default for name, (_, default) in OPTIONAL_COLUMNS.items() if name not in frame})
    try:
        frame = frame[list(ALL_COLUMNS)].astype(ALL_COLUMNS)
    except (ValueError, TypeError) as exc:
        raise CatalogError(f"{where}: a column has the wrong type ({exc}); expected {COLUMNS}") from None
    bad = frame[~(frame["time_s"] > 0) | (frame[["num_tokens", "context_len", "num_bytes", "tp"]] < 0).any(axis=1)
                | (frame["ep"] < 1)]
    if len(bad):
        row = bad.iloc[0]
        raise CatalogError(
            f"{where}: {len(bad)} row(s) with a non-positive time or a negative shape, first: operator "
            f"{row['operator']!r}, num_tokens {row['num_tokens']}, time_s {row['time_s']}"
        )
    return frame.reset_index(drop=True)


def write_tables(directory: Path, frame: pd.DataFrame, metadata: dict[str, Any]) -> Path:
    """Write `ops.parquet` and `metadata.json` into `directory` (created if needed)."""
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise ValueError(f"table metadata lacks {', '.join(missing)}")
    directory.mkdir(parents=True, exist_ok=True)
    frame = normalise(frame).sort_values(["operator", "dtype", "variant", "tp", "ep", "num_devices", "num_tokens",
                                          "context_len", "num_bytes"])
    frame.to_parquet(directory / OPS_FILE, index=False, compression="zstd")
    meta = {"schema_version": SCHEMA_VERSION, **metadata}
    (directory / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return directory


def read_tables(directory: Path) -> TableSet:
    """Read a table directory; every problem is a CatalogError naming the file and the fix."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CatalogError(
            f"{directory}: no such cost-table directory; write one with `simrun profile --model M --device cpu|cuda "
            f"-o {directory}`, or leave `tables` out to use the shipped tables"
        )
    ops_path, meta_path = directory / OPS_FILE, directory / METADATA_FILE
    for path in (ops_path, meta_path):
        if not path.is_file():
            raise CatalogError(f"{path}: missing; a cost-table directory holds {OPS_FILE} and {METADATA_FILE} "
                               "(as written by `simrun profile`)")
    try:
        metadata = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{meta_path}: malformed JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(metadata, dict):
        raise CatalogError(f"{meta_path}: expected a JSON object")
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise CatalogError(f"{meta_path}: missing key(s) {', '.join(missing)}")
    if metadata.get("schema_version") != SCHEMA_VERSION:
        raise CatalogError(f"{meta_path}: schema_version {metadata.get('schema_version')!r}, this servesim reads "
                           f"{SCHEMA_VERSION}; profile again with this version")
    try:
        frame = pd.read_parquet(ops_path)
    except Exception as exc:  # pyarrow raises several types for a corrupt or foreign file
        raise CatalogError(f"{ops_path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    return TableSet(normalise(frame, str(ops_path)), metadata, directory)
