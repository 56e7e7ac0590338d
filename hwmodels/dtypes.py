"""Numeric formats: canonical short names, their storage size, and which roles they can play.

Catalogs, HuggingFace configs and users spell formats differently (`bfloat16`, `bf16`, `half`);
everything inside hwmodels uses the canonical short name so lookups never miss.

`int4` is a weight-only format (GPTQ/AWQ-style: 4-bit weights in groups of 128 sharing one bf16
scale, dequantised inside the GEMM, which runs at the activation format's rate); it is never an
activation or KV-cache format.
"""
from __future__ import annotations

DTYPE_BYTES: dict[str, float] = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int4": 0.5}
WEIGHT_ONLY_DTYPES = frozenset({"int4"})
INT4_GROUP_SIZE = 128
SCALE_BYTES = 2  # one bf16 scale per quantisation group

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
    "w4a16": "int4",
}


def canonical_dtype(name: str) -> str | None:
    """The canonical name of a format, or None when the name is not one hwmodels knows."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in DTYPE_BYTES else None


def known_dtypes() -> list[str]:
    return list(DTYPE_BYTES)


def weight_element_bytes(dtype: str) -> float:
    """Stored bytes per weight, quantisation scales included (int4: 0.5 + 2/128)."""
    if dtype == "int4":
        return DTYPE_BYTES[dtype] + SCALE_BYTES / INT4_GROUP_SIZE
    return DTYPE_BYTES[dtype]
