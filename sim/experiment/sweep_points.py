"""A sweep's points: the experiment's `sweep:` block expanded into one validated config per point.

The axes, outermost first: named variants, each `grid` key in the order written, the `zip` lists
(one axis), the seeds. Every combination is a point, named `p0000`, `p0001`, ... in that order, so
names are filesystem-safe and stable for one sweep definition; `label` says what the point is.
Every point is validated before any runs, and all problems are reported at once.
"""
from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass
from typing import Any

from servesim.sim.errors import ConfigError
from servesim.sim.experiment.config import ExperimentConfig, SweepConfig
from servesim.sim.experiment.loading import set_key_path, validate_config
from servesim.sim.experiment.variants import merge

VARIANT_COLUMN = "variant"
SEED_KEY = "seed"


@dataclass(frozen=True)
class SweepPoint:
    """One point: its name, a readable label, the swept values (by column) and its full config."""

    name: str
    label: str
    values: dict[str, Any]
    config: ExperimentConfig


def swept_columns(sweep: SweepConfig) -> list[str]:
    """The columns that identify a point, in axis order: `variant`, then dotted keys, then `seed`."""
    columns = [VARIANT_COLUMN] if sweep.variants else []
    columns += [*sweep.grid, *sweep.zip]
    return columns + ([SEED_KEY] if sweep.seeds is not None else [])


def expand_sweep(config: ExperimentConfig, origin: str = "<config>") -> list[SweepPoint]:
    """Every point of `config.sweep`, validated; a `ConfigError` lists the problems of every bad point."""
    if config.sweep is None:
        raise ConfigError(f"{origin}: has no `sweep:` block; add one (see the README's Sweeps section), "
                          f"or run it with `simrun run`")
    base = config.model_dump(mode="json", exclude={"sweep"}, exclude_none=True)
    combinations = list(itertools.product(*_axes(config.sweep)))
    width = max(4, len(str(len(combinations) - 1)))
    points, problems = [], []
    for index, combination in enumerate(combinations):
        name = f"p{index:0{width}d}"
        data = copy.deepcopy(base)
        values: dict[str, Any] = {}
        for column, value, override in itertools.chain(*combination):
            values[column] = value
            if override is not None:
                data = merge(data, copy.deepcopy(override))
            else:
                set_key_path(data, column, copy.deepcopy(value), f"sweep point {name}")
        label = point_label(values)
        data["name"] = f"{config.name}/{name}"
        try:
            points.append(SweepPoint(name, label, values, validate_config(data, origin=f"{name} ({label})")))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError(f"{origin}: {len(problems)} of the sweep's {len(combinations)} points are invalid; "
                          f"nothing was run:\n" + "\n".join(problems))
    return points


def _axes(sweep: SweepConfig) -> list[list[tuple[tuple[str, Any, dict[str, Any] | None], ...]]]:
    """Each axis as its list of steps; a step sets one or more (column, value, variant override)."""
    axes: list[list[tuple[tuple[str, Any, dict[str, Any] | None], ...]]] = []
    if sweep.variants:
        axes.append([((VARIANT_COLUMN, name, override),) for name, override in sweep.variants.items()])
    axes += [[((key, value, None),) for value in values] for key, values in sweep.grid.items()]
    if sweep.zip:
        length = len(next(iter(sweep.zip.values())))
        axes.append([tuple((key, values[i], None) for key, values in sweep.zip.items()) for i in range(length)])
    if sweep.seeds is not None:
        axes.append([((SEED_KEY, seed, None),) for seed in sweep.seeds])
    return axes


def point_label(values: dict[str, Any]) -> str:
    """`sarathi, scheduler.max_num_batched_tokens=512, seed=1`: the variant by name, other keys as key=value."""
    return ", ".join(str(value) if column == VARIANT_COLUMN else f"{column}={_shown(value)}"
                     for column, value in values.items())


def _shown(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
    return str(value)
