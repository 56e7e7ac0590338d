"""Hardware and model catalogs, and cost models that turn a batch shape into an iteration time."""
from servesim.hwmodels.catalog import list_hardware, list_models, load_hardware, load_model, model_from_hf_config
from servesim.hwmodels.cost_model import ConstantCostModel, CostModel, IterationCost, OperatorTime
from servesim.hwmodels.errors import CatalogError
from servesim.hwmodels.hardware_spec import DeviceKind, HardwareSpec
from servesim.hwmodels.model_spec import ModelSpec
from servesim.hwmodels.roofline import RooflineCostModel
from servesim.hwmodels.shapes import BatchShape, LayerSlice, ParallelPlan

__all__ = [
    "BatchShape", "CatalogError", "ConstantCostModel", "CostModel", "DeviceKind", "HardwareSpec", "IterationCost",
    "LayerSlice", "ModelSpec", "OperatorTime", "ParallelPlan", "RooflineCostModel", "list_hardware", "list_models",
    "load_hardware", "load_model", "model_from_hf_config",
]
