"""Small excerpts of public traces shipped inside the package, so servesim runs with no other data.

Origins, licences and how each excerpt was cut are in traces/data/SOURCE.md.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from servesim.traces.errors import TraceError

SAMPLES = {
    "azure_conv": "azure_conv_sample.csv",
    "mooncake_conversation": "mooncake_conversation_sample.jsonl",
    "sharegpt_lengths": "sharegpt_lengths_sample.csv",
}


def list_samples() -> list[str]:
    """Names accepted by `sample_path`, sorted."""
    return sorted(SAMPLES)


def sample_path(name: str) -> Path:
    """The file of a bundled sample: azure_conv (format azure), mooncake_conversation (format
    mooncake) or sharegpt_lengths (a length table)."""
    if name not in SAMPLES:
        raise TraceError(f"unknown sample trace {name!r}. Bundled samples: {', '.join(list_samples())}.")
    return Path(str(files("servesim.traces") / "data" / SAMPLES[name]))
