"""Workloads: loaders for published trace formats, synthetic generators, bundled samples."""
from traces.errors import TraceError
from traces.loaders import FORMATS, load_length_table, load_trace
from traces.samples import list_samples, sample_path
from traces.schema import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, validate_trace
from traces.synthetic import arrival_times, sample_length_pairs, sample_lengths
from traces.transforms import scale_rate, take, time_window

__all__ = [
    "FORMATS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "TraceError",
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
