"""The cost tables shipped with servesim: `hwmodels/data/tables/<source>/<hardware>/<model>/`.

Sources, in order of precedence when a run names none (the first that has the hardware, the model
and the run's TP degree wins): `aiconfigurator` (vLLM's own kernels measured by AIConfigurator),
`vidur` (Vidur's measurements of unfused operators with NCCL all-reduce), `profiled` (servesim's
own profiler).
"""
from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from servesim.hwmodels.errors import CatalogError
from servesim.hwmodels.tables.schema import OPS_FILE, TableSet, read_tables

SHIPPED_PREFIX = "hwmodels/data/tables"
SOURCES = ("aiconfigurator", "vidur", "profiled")


def shipped_root() -> Path:
    return Path(str(resources.files("servesim.hwmodels") / "data" / "tables"))


def list_shipped() -> list[tuple[str, str, str]]:
    """(source, hardware, model) of every shipped table set."""
    root = shipped_root()
    return sorted((p.parents[2].name, p.parent.parent.name, p.parent.name) for p in root.glob(f"*/*/*/{OPS_FILE}"))


def has_shipped_tables(hardware: str, model: str, tp_degrees: Iterable[int] = ()) -> bool:
    """Whether one shipped source covers `model` on `hardware` at each of `tp_degrees`."""
    needed = set(tp_degrees)
    return any(needed <= _shipped_tp_degrees(source, hardware, model) for source in SOURCES
               if (shipped_root() / source / hardware / model / OPS_FILE).is_file())


@cache
def _shipped_tp_degrees(source: str, hardware: str, model: str) -> frozenset[int]:
    """Cached: the shipped files never change while servesim runs, and every default run asks."""
    return frozenset(read_tables(shipped_root() / source / hardware / model).tp_degrees)


def auto_cost_model_kind(hardware: str, model: str, tp_degrees: Iterable[int] = ()) -> Literal["table", "roofline"]:
    """What `cost_model.kind: auto` (the default, and `simrun validate-real --cost-model auto`) runs:
    the measured tables where servesim ships them for this hardware, model and TP degrees, since
    they track real runs more closely; the calibrated roofline elsewhere."""
    return "table" if has_shipped_tables(hardware, model, tp_degrees) else "roofline"


def load_shipped(hardware: str, model: str, source: str | None = None, tp: int | None = None) -> tuple[TableSet, str]:
    """The shipped tables for `model` on `hardware` (from `source`, or the first source by
    precedence that has them at tensor-parallel degree `tp` when given), and the label a run
    summary shows."""
    if source is not None and source not in SOURCES:
        raise CatalogError(f"unknown cost-table source {source!r}; shipped sources: {', '.join(SOURCES)}")
    found = None
    for candidate in [source] if source else SOURCES:
        directory = shipped_root() / candidate / hardware / model
        if (directory / OPS_FILE).is_file():
            tables = read_tables(directory)
            found = found or (tables, f"{SHIPPED_PREFIX}/{candidate}/{hardware}/{model}")
            if tp is None or tp in tables.tp_degrees:
                return tables, f"{SHIPPED_PREFIX}/{candidate}/{hardware}/{model}"
    if found is not None:
        return found  # the cost model names the missing TP degree
    available = ", ".join(f"{s}/{h}/{m}" for s, h, m in list_shipped() if source in (None, s)) or "none"
    where = f" from source {source!r}" if source else ""
    raise CatalogError(
        f"no shipped cost tables{where} for model {model!r} on hardware {hardware!r} (shipped: {available}); "
        f"profile them with `simrun profile --model {model} --device cuda -o DIR` and set "
        "`cost_model.tables: DIR`, or use `cost_model.kind: roofline`"
    )
