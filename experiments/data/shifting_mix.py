"""Writes shifting_mix.csv: a synthetic trace whose prompt/output mix shifts over time.

Two phases of Poisson arrivals, repeated: long prompts with short answers (summarisation, RAG:
prefill-heavy), then short prompts with long answers (chat, generation: decode-heavy). Lengths
are lognormal (sigma 0.3) around each phase's means. Synthetic, seeded: rerun to regenerate
byte for byte (`python experiments/data/shifting_mix.py`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

PHASES = (
    # (seconds, requests per second, mean prompt tokens, mean output tokens)
    (60.0, 17.0, 6000, 24),
    (60.0, 40.0, 200, 700),
    (60.0, 17.0, 6000, 24),
    (60.0, 40.0, 200, 700),
)
SIGMA = 0.3


def shifting_mix(seed: int = 0) -> pd.DataFrame:
    """The trace's rows: arrival_s, prompt_tokens, output_tokens."""
    rng = np.random.default_rng(seed)
    frames, start = [], 0.0
    for seconds, rate, prompt_mean, output_mean in PHASES:
        gaps = rng.exponential(1 / rate, size=int(rate * seconds * 2))
        arrivals = start + np.cumsum(gaps)
        arrivals = arrivals[arrivals < start + seconds]
        frames.append(pd.DataFrame({
            "arrival_s": np.round(arrivals, 6),
            "prompt_tokens": _lognormal(rng, prompt_mean, len(arrivals)),
            "output_tokens": _lognormal(rng, output_mean, len(arrivals)),
        }))
        start += seconds
    return pd.concat(frames, ignore_index=True)


def _lognormal(rng: np.random.Generator, mean: float, size: int) -> np.ndarray:
    mu = np.log(mean) - SIGMA**2 / 2
    return np.maximum(np.rint(rng.lognormal(mu, SIGMA, size)), 2).astype(np.int64)


if __name__ == "__main__":
    shifting_mix().to_csv(Path(__file__).with_name("shifting_mix.csv"), index=False)
