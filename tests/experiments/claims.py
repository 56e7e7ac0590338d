"""Runs an experiment's variants, shrunk by overrides, and checks its claim."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from servesim.sim.experiment.loading import load_config, variant_configs
from servesim.sim.experiment.variants import check_claim
from servesim.sim.runner import prepare, simulate

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def run_claim(name: str, overrides: list[str]) -> dict[str, Any]:
    """The claim's verdict (see `sim.experiment.variants.check_claim`) for experiments/<name>.yaml."""
    config, base_dir = load_config(EXPERIMENTS / f"{name}.yaml", overrides)
    assert config.claim is not None, f"{name} states no claim"
    summaries = {
        variant: simulate(prepare(variant_config, base_dir)).summary
        for variant, variant_config in variant_configs(config).items()
    }
    return check_claim(config.claim, summaries)
