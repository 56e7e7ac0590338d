"""Profiled cost tables: their schema and files, interpolation, and the cost model that reads them.

The profiler (`profiler`, which needs torch) writes tables; this package reads them without torch.
"""
from servesim.hwmodels.tables.cost_model import TableCostModel, TableRangeWarning
from servesim.hwmodels.tables.schema import COLUMNS, TableSet, read_tables, write_tables
from servesim.hwmodels.tables.shipped import list_shipped, load_shipped

__all__ = [
    "COLUMNS", "TableCostModel", "TableRangeWarning", "TableSet", "list_shipped", "load_shipped", "read_tables",
    "write_tables",
]
