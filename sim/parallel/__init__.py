"""Replicas that nothing couples, simulated in several processes with the whole run's results.

When the router's choice depends only on the sequence of arrivals and nothing else joins the
replicas (no pools, network or role switching, no closed-loop clients, no lockstep group, no
state summed over replicas in event order), each replica computes the same thing whether or
not the others run beside it. `simulation.workers` then routes the workload once, gives each
worker process a share of the replicas with their requests, and merges the workers' files into
the results a single process writes (README, "Parallel runs").
"""
