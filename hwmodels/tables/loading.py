"""Build a `TableCostModel` from what a config says: a tables directory, or the shipped tables."""
from __future__ import annotations

from pathlib import Path

from servesim.hwmodels.errors import CatalogError
from servesim.hwmodels.hardware_spec import HardwareSpec
from servesim.hwmodels.model_spec import ModelSpec
from servesim.hwmodels.roofline import RooflineCostModel
from servesim.hwmodels.shapes import ParallelPlan
from servesim.hwmodels.tables.cost_model import TableCostModel
from servesim.hwmodels.tables.schema import read_tables
from servesim.hwmodels.tables.shipped import load_shipped


def table_cost_model(
    tables: str | None, base_dir: Path, model: ModelSpec, hardware: HardwareSpec, plan: ParallelPlan,
    roofline: RooflineCostModel, source: str | None = None, moe_distribution: str = "balanced",
    measured_collectives: bool = True,
) -> TableCostModel:
    """`tables` is a directory relative to `base_dir` (the config file's folder), or None for the
    shipped tables of `hardware` and `model` (from `source`, or the first source by precedence);
    `roofline` prices what the tables lack (and the collectives without `measured_collectives`)."""
    if tables is None:
        table_set, label = load_shipped(hardware.name, model.name, source, plan.tp)
    elif source is not None:
        raise CatalogError(f"set either a tables directory ({tables!r}) or a shipped source ({source!r}), not both")
    else:
        path = Path(tables)
        path = path if path.is_absolute() else base_dir / path
        table_set, label = read_tables(path), str(path)
    return TableCostModel(model, hardware, plan, table_set, label, roofline, moe_distribution, measured_collectives)
