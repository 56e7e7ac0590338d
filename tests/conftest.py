"""Settings every test shares.

Hypothesis fails an example that runs longer than its deadline (200 ms by default): a wall-clock
assertion, which the tests must not make (the same example takes twice as long on a busy
machine). Speed is measured by the benchmarks instead."""
from hypothesis import settings

settings.register_profile("servesim", deadline=None)
settings.load_profile("servesim")
