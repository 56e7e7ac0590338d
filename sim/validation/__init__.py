"""Replaying real serving runs and comparing the simulation with them."""
