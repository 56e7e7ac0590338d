"""Small sample traces shipped inside the package, so servesim runs with no other data."""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from traces.errors import TraceError

SAMPLES = {
    "azure_conv": "azure_conv_sample.csv",
    "mooncake_conversation": "mooncake_conversation_sample.jsonl",
    "sharegpt_lengths": "sharegpt_lengths_sample.csv",
}


def list_samples() -> list[str]:
    return sorted(SAMPLES)


def sample_path(name: str) -> Path:
    """The file of a bundled sample (see traces/data/SOURCE.md for origin and licence)."""
    if name not in SAMPLES:
        raise TraceError(f"unknown sample trace {name!r}; bundled samples: {', '.join(list_samples())}")
    return Path(str(files("traces") / "data" / SAMPLES[name]))
