"""Sweeps: many points of one experiment, run in local processes or on Ray, collected in one table."""
