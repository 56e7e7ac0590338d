"""Tables of request lengths without arrival times, used as empirical length distributions.

The Vidur and Sarathi-Serve length files (ShareGPT, arXiv summarization) name their columns
`num_prefill_tokens` and `num_decode_tokens`; a canonical trace CSV works too.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from servesim.traces.readers import read_csv_table, require_columns
from servesim.traces.schema import validate_lengths

VIDUR_NAMES = {"prompt_tokens": "num_prefill_tokens", "output_tokens": "num_decode_tokens"}


def load_length_table(path: str | Path) -> pd.DataFrame:
    """A CSV of lengths as columns prompt_tokens and output_tokens (int64 >= 1); other columns are ignored."""
    path = Path(path)
    table, where = read_csv_table(path, "length table")
    names = {} if "prompt_tokens" in table.columns else VIDUR_NAMES
    where = replace(where, names=names)
    require_columns(
        table.columns,
        tuple(names.get(c, c) for c in VIDUR_NAMES),
        where,
        "length table",
        "A length table has the columns num_prefill_tokens and num_decode_tokens "
        "(or prompt_tokens and output_tokens).",
    )
    return validate_lengths(table.rename(columns={v: k for k, v in names.items()}), where)
