"""The simulation engine: requests, iterations, paged KV memory and prefix cache, replicas and the cluster."""


def engine_build() -> str:
    """"compiled" when this install's engine modules were compiled with mypyc (setup.py,
    SERVESIM_COMPILE=1), "interpreted" otherwise. Both compute the same outputs."""
    from servesim.sim.engine import replica

    return "interpreted" if replica.__file__.endswith(".py") else "compiled"
