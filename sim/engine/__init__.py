"""The simulation engine: requests, iterations, paged KV memory and prefix cache, replicas and the cluster."""
