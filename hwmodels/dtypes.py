"""Numeric formats: canonical short names and their storage size.

Catalogs, HuggingFace configs and users spell formats differently (`bfloat16`, `bf16`, `half`);
everything inside hwmodels uses the canonical short name so lookups never miss.
"""
from __future__ import annotations

DTYPE_BYTES: dict[str, int] = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}

_ALIASES: dict[str, str] = {
    "float32": "fp32",
    "float": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "float8": "fp8",
    "float8_e4m3fn": "fp8",
    "float8_e5m2": "fp8",
    "fp8_e4m3": "fp8",
    "fp8_e5m2": "fp8",
}


def canonical_dtype(name: str) -> str | None:
    """The canonical name of a format, or None when the name is not one hwmodels knows."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in DTYPE_BYTES else None


def known_dtypes() -> list[str]:
    return list(DTYPE_BYTES)
