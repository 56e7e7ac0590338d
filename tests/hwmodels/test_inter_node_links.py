"""Every hardware entry has its NIC between nodes, with the catalog's checks on the values."""
import pytest

from servesim.hwmodels.catalog import build_spec, list_hardware, load_hardware
from servesim.hwmodels.errors import CatalogError
from servesim.hwmodels.hardware_spec import HardwareSpec

ENTRY = {"source": "x", "kind": "gpu", "memory_gib": 80, "memory_bandwidth_gbps": 1000, "peak_tflops": {"bf16": 100},
         "devices_per_node": 8, "intra_node_link_gbps": 100, "host_link_gbps": 32, "link_latency_us": 3,
         "inter_node_link_gbps": 50, "inter_node_latency_us": 5, "efficiency_source": "x"}


@pytest.mark.parametrize("name", list_hardware())
def test_every_entry_has_a_nic_slower_than_its_node_fabric(name: str) -> None:
    spec = load_hardware(name)
    assert 0 < spec.inter_node_link_gbps <= spec.intra_node_link_gbps
    assert spec.inter_node_latency_us >= spec.link_latency_us


def test_dgx_figures_match_one_nic_per_gpu() -> None:
    assert load_hardware("h100-sxm").inter_node_link_gbps == 50  # 400 Gb/s ConnectX-7
    assert load_hardware("a100-80g").inter_node_link_gbps == 25  # 200 Gb/s HDR


@pytest.mark.parametrize("field, value, message", [
    ("inter_node_link_gbps", 0, "inter_node_link_gbps must be > 0, got 0"),
    ("inter_node_latency_us", -1, "inter_node_latency_us must be >= 0, got -1"),
])
def test_bad_nic_figures_name_the_entry_and_field(field: str, value: float, message: str) -> None:
    with pytest.raises(CatalogError, match=f"'gpu9'.*{message}"):
        build_spec(HardwareSpec, "gpu9", ENTRY | {field: value})


def test_a_missing_nic_is_named() -> None:
    entry = {key: value for key, value in ENTRY.items() if key != "inter_node_link_gbps"}
    with pytest.raises(CatalogError, match="gpu9.inter_node_link_gbps: missing"):
        build_spec(HardwareSpec, "gpu9", entry)
