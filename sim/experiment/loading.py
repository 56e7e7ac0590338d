"""Reading experiment configs: YAML, `--set` overrides, validation, and readable errors.

All problems of a config are reported at once, each with its key path, the bad value, and a
suggestion where a key looks like a typo of a valid one.
"""
from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from servesim.hwmodels.strict_parsing import AliasExpansionError, load_yaml, yaml_problem
from servesim.policies import PolicyError, validate_params
from servesim.sim.errors import ConfigError
from servesim.sim.experiment.config import (
    EvictionSpec,
    ExperimentConfig,
    PolicySpec,
    PreemptionSpec,
    RouterSpec,
    SchedulerSpec,
    SweepConfig,
    TransferSpec,
)
from servesim.sim.experiment.variants import claim_metric_problems, variant_data

POLICY_SECTIONS = {
    "scheduler": ("scheduler", SchedulerSpec),
    "preemption": ("preemption", PreemptionSpec),
    "cluster.router": ("router", RouterSpec),
    "cluster.transfer": ("transfer", TransferSpec),
    "cache.eviction": ("eviction", EvictionSpec),
}


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = load_yaml(path.read_text())
    except (AliasExpansionError, yaml.constructor.ConstructorError) as exc:
        raise ConfigError(f"{path}: {yaml_problem(exc)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML at {yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply `key.path=value` overrides (values parsed as YAML) to a copy of `data`."""
    result = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected key.path=value, e.g. scheduler.max_num_seqs=64")
        set_key_path(result, key, _override_value(item, raw), f"--set {item!r}")
    return result


def set_key_path(data: dict[str, Any], key: str, value: Any, origin: str) -> None:
    """Set the dotted `key` of `data` in place, making missing sections; `origin` names the setting in errors."""
    node = data
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError(f"{origin}: {where} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _override_value(item: str, raw: str) -> Any:
    """The value of `--set key=raw` parsed as YAML; text YAML cannot parse stays a string,
    but a repeated key or an alias bomb in a flow mapping is an error like in the file."""
    try:
        return load_yaml(raw)
    except (AliasExpansionError, yaml.constructor.ConstructorError) as exc:
        raise ConfigError(f"--set {item!r}: {yaml_problem(exc)}") from None
    except yaml.YAMLError:
        return raw


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> tuple[ExperimentConfig, Path]:
    """Load, override and validate a config file; returns the config and the file's folder."""
    path = Path(path)
    data = apply_overrides(read_yaml(path), overrides)
    return validate_config(data, origin=str(path)), path.resolve().parent


def validate_config(data: Mapping[str, Any], origin: str = "<config>") -> ExperimentConfig:
    """Validate the whole config, reporting every problem (keys and policy parameters) at once."""
    problems: list[str] = []
    config = None
    try:
        config = ExperimentConfig.model_validate(dict(data))
    except ValidationError as exc:
        problems = [_describe_error(err) for err in exc.errors()]
    problems += _policy_problems(data)
    if config is not None and config.variants:
        problems += _variant_problems(config)
    if config is not None and config.sweep is not None:
        problems += _sweep_key_problems(config.sweep)
    if config is not None:
        problems += claim_metric_problems(config)
    if problems or config is None:
        raise ConfigError(f"{origin}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return config


def variant_configs(config: ExperimentConfig, origin: str = "<config>") -> dict[str, ExperimentConfig]:
    """Each variant of `config` as a validated config of its own."""
    return {
        name: validate_config(data, origin=f"{origin}, variant {name!r}") for name, data in variant_data(config).items()
    }


def _variant_problems(config: ExperimentConfig) -> list[str]:
    problems = []
    for name, data in variant_data(config).items():
        try:
            validate_config(data)
        except ConfigError as exc:
            details = str(exc).split("\n")[1:]
            problems += [f"variants.{name}: {line.strip()}" for line in details]
    return problems


def _sweep_key_problems(sweep: SweepConfig) -> list[str]:
    """Each swept key must name a key of the config schema (a policy's parameters are checked per point)."""
    problems = []
    for section, keys in (("sweep.grid", sweep.grid), ("sweep.zip", sweep.zip)):
        for key in keys:
            problem = _key_path_problem(key.split("."))
            if problem:
                problems.append(f"{section}: {key!r}: {problem}")
    return problems


def _key_path_problem(parts: list[str]) -> str | None:
    model: type[BaseModel] = ExperimentConfig
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            known = sorted(model.model_fields)
            close = difflib.get_close_matches(part, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid keys here: {', '.join(known)}"
            where = ".".join(parts[:depth]) or "the top level"
            return f"unknown key {part!r} in {where}; {hint}"
        sub = _model_in(field.annotation)
        policy = sub is not None and issubclass(sub, PolicySpec)
        if depth == len(parts) - 1 or policy or _is_open_mapping(field.annotation):
            return None
        if sub is None:
            return f"{'.'.join(parts[: depth + 1])} is a value, not a section"
        model = sub
    return None


def _is_open_mapping(annotation: Any) -> bool:
    """A free-form mapping (length distributions, variants): the keys below it are its own business."""
    if typing.get_origin(annotation) is dict:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return any(_is_open_mapping(arg) for arg in typing.get_args(annotation))
    return False


def _policy_problems(data: Mapping[str, Any]) -> list[str]:
    """Check each policy section's parameters against its policy's own model."""
    problems = []
    for section, (kind, spec) in POLICY_SECTIONS.items():
        node: Any = data
        for part in section.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        problems += _policy_section_problems(section, kind, spec, node)
    cluster = data.get("cluster")
    pools = cluster.get("pools") if isinstance(cluster, Mapping) else None
    for pool in pools if isinstance(pools, list) else ():
        if isinstance(pool, Mapping):
            where = f"cluster.pools[{pool.get('name')}].scheduler"
            problems += _policy_section_problems(where, "scheduler", SchedulerSpec, pool.get("scheduler"))
    return problems


def _policy_section_problems(section: str, kind: str, spec: type[PolicySpec], node: Any) -> list[str]:
    if not isinstance(node, Mapping):
        return []
    name = node.get("name", spec.model_fields["name"].default)
    if not isinstance(name, str):
        return []
    params = {k: v for k, v in node.items() if k != "name"}
    try:
        validate_params(kind, name, params)
    except PolicyError as exc:
        return [f"{section}: {exc}"]
    return []


def _describe_error(err: Mapping[str, Any]) -> str:
    loc = [str(p) for p in err["loc"] if not _is_union_tag(p)]
    path = ".".join(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys here: {', '.join(known)}"
        return f"{path}: unknown key{hint}"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{path}: required key is missing"
    got = err.get("input")
    shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
    return f"{path}: {message}{shown}"


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part in {"str", "ModelRef"})


def _known_keys(loc: list[str]) -> list[str]:
    model: type[BaseModel] | None = ExperimentConfig
    for part in loc:
        field = model.model_fields.get(part) if model else None
        model = _model_in(field.annotation) if field else None
    return sorted(model.model_fields) if model else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found:
                return found
    return None
