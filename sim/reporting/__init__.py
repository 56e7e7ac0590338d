"""Reporting a run: metrics recording, the summary, the results directory, plots and the headline."""
