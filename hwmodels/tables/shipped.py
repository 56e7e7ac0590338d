"""The cost tables shipped with servesim: `hwmodels/data/tables/<hardware>/<model>/`."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from servesim.hwmodels.errors import CatalogError
from servesim.hwmodels.tables.schema import OPS_FILE, TableSet, read_tables

SHIPPED_PREFIX = "hwmodels/data/tables"


def shipped_root() -> Path:
    return Path(str(resources.files("servesim.hwmodels").joinpath("data", "tables")))


def list_shipped() -> list[tuple[str, str]]:
    """(hardware, model) of every shipped table set."""
    root = shipped_root()
    return sorted((p.parent.parent.name, p.parent.name) for p in root.glob(f"*/*/{OPS_FILE}"))


def load_shipped(hardware: str, model: str) -> tuple[TableSet, str]:
    """The shipped tables for `model` on `hardware`, and the label a run summary shows."""
    directory = shipped_root() / hardware / model
    if not (directory / OPS_FILE).is_file():
        available = ", ".join(f"{h}/{m}" for h, m in list_shipped()) or "none"
        raise CatalogError(
            f"no shipped cost tables for model {model!r} on hardware {hardware!r} (shipped: {available}); "
            f"profile them with `simrun profile --model {model} --device cuda -o DIR` and set "
            "`cost_model.tables: DIR`, or use `cost_model.kind: roofline`"
        )
    return read_tables(directory), f"{SHIPPED_PREFIX}/{hardware}/{model}"
