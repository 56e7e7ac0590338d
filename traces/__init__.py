"""Workloads: loaders for published trace formats, synthetic generators, bundled samples.

Every source yields the canonical trace table described in `traces.schema`.
"""
from servesim.traces.errors import TraceError
from servesim.traces.lengths import load_length_table
from servesim.traces.loaders import FORMATS, TraceFormat, load_trace
from servesim.traces.prefixes import add_shared_prefixes
from servesim.traces.ragpulse import RAGPULSE_COMPONENTS
from servesim.traces.samples import list_samples, sample_path
from servesim.traces.schema import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, validate_trace
from servesim.traces.synthetic import (
    ARRIVAL_PROCESSES,
    LENGTH_DISTRIBUTIONS,
    arrival_times,
    sample_length_pairs,
    sample_lengths,
)
from servesim.traces.transforms import scale_rate, take, time_window

__all__ = [
    "add_shared_prefixes",
    "ARRIVAL_PROCESSES",
    "FORMATS",
    "LENGTH_DISTRIBUTIONS",
    "OPTIONAL_COLUMNS",
    "RAGPULSE_COMPONENTS",
    "REQUIRED_COLUMNS",
    "TraceError",
    "TraceFormat",
    "arrival_times",
    "list_samples",
    "load_length_table",
    "load_trace",
    "sample_length_pairs",
    "sample_lengths",
    "sample_path",
    "scale_rate",
    "take",
    "time_window",
    "validate_trace",
]
