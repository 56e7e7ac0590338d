"""Batch-forming scheduler policies."""
