"""Placement search (`simrun plan`): the pools and parallel plans with the most goodput per GPU on a budget."""
