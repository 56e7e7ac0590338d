"""Setting up an experiment: the config schema and its loading, workloads, request classes, variants, KV capacity."""
