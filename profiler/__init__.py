"""Profiling real kernels with torch into servesim cost tables, and the reference serving engine.

The only package that imports torch. Nothing imports it at simulation time: `simrun profile`
and `simrun fidelity` load it on demand (install with `pip install -e '.[profile]'`).
"""
