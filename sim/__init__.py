"""servesim's engine: config, requests, replicas, KV memory, cluster, metrics, runner and CLI."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("servesim")
except PackageNotFoundError:
    __version__ = "0+unknown"
