"""The model and hardware catalogs: YAML files shipped in hwmodels/data, validated when loaded.

Each catalog is read and checked as a whole on first use (never at import), and every problem
is reported at once with the entry and field it concerns.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import types
import typing
from enum import Enum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from servesim.hwmodels.dtypes import canonical_dtype
from servesim.hwmodels.errors import CatalogError
from servesim.hwmodels.hardware_spec import DeviceKind, HardwareSpec
from servesim.hwmodels.hf_config import model_from_hf_config
from servesim.hwmodels.model_spec import ModelSpec
from servesim.hwmodels.strict_parsing import load_yaml, yaml_problem

__all__ = [
    "CatalogError", "DeviceKind", "HardwareSpec", "ModelSpec", "list_hardware", "list_models",
    "load_hardware", "load_model", "model_from_hf_config",
]

Spec = TypeVar("Spec", ModelSpec, HardwareSpec)
_DTYPE_FIELDS = ("weight_dtype", "kv_dtype", "activation_dtype")


def list_models() -> list[str]:
    return sorted(_models())


def list_hardware() -> list[str]:
    return sorted(_hardware())


def load_model(name_or_path: str | Path) -> ModelSpec:
    """A catalog model by name, or a model built from a HuggingFace config.json path."""
    if isinstance(name_or_path, str) and name_or_path in _models():
        return _models()[name_or_path]
    if isinstance(name_or_path, Path) or _looks_like_path(name_or_path):
        return model_from_hf_config(name_or_path)
    raise CatalogError(_unknown("model", name_or_path, list_models(), "or pass the path of a HuggingFace config.json"))


def load_hardware(name: str) -> HardwareSpec:
    """A catalog device by name."""
    if name in _hardware():
        return _hardware()[name]
    raise CatalogError(_unknown("hardware", name, list_hardware(), "or add an entry to hwmodels/data/hardware.yaml"))


def _looks_like_path(text: str) -> bool:
    return text.endswith(".json") or "/" in text or "\\" in text or Path(text).is_dir()


def _unknown(kind: str, name: str, valid: list[str], alternative: str) -> str:
    close = [v for v in valid if name and v.startswith(name)] or difflib.get_close_matches(name, valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} Valid {kind} names: {', '.join(valid)}; {alternative}."


@cache
def _models() -> dict[str, ModelSpec]:
    entries = _read_catalog("models.yaml")
    for entry in entries.values():
        if isinstance(entry, dict):
            for key in _DTYPE_FIELDS:
                if isinstance(entry.get(key), str):
                    entry[key] = canonical_dtype(entry[key]) or entry[key]
    return _build_all(ModelSpec, entries, "hwmodels/data/models.yaml")


@cache
def _hardware() -> dict[str, HardwareSpec]:
    return _build_all(HardwareSpec, _read_catalog("hardware.yaml"), "hwmodels/data/hardware.yaml")


def _read_catalog(filename: str) -> dict[str, Any]:
    text = (resources.files("servesim.hwmodels") / "data" / filename).read_text(encoding="utf-8")
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"hwmodels/data/{filename}: {yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"hwmodels/data/{filename}: expected a mapping of entry names to fields")
    return data


def _build_all(cls: type[Spec], entries: dict[str, Any], where: str) -> dict[str, Spec]:
    specs: dict[str, Spec] = {}
    problems: list[str] = []
    for name, entry in entries.items():
        try:
            specs[str(name)] = build_spec(cls, str(name), entry)
        except CatalogError as exc:
            problems.append(str(exc))
    if problems:
        raise CatalogError(f"{where}: " + "; ".join(problems))
    return specs


def build_spec(cls: type[Spec], name: str, entry: object) -> Spec:
    """Check a catalog entry's fields (unknown, missing, wrong type) and build the spec."""
    if not isinstance(entry, dict):
        raise CatalogError(f"{name}: expected a mapping of fields, got {type(entry).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "name"}
    problems = [f"{name}.{key}: unknown field" + _suggest(str(key), list(fields)) for key in entry if key not in fields]
    values: dict[str, Any] = {}
    for key, spec_field in fields.items():
        if key not in entry:
            if spec_field.default is dataclasses.MISSING:
                problems.append(f"{name}.{key}: missing (required)")
            continue
        try:
            values[key] = _convert(entry[key], hints[key])
        except TypeError as exc:
            problems.append(f"{name}.{key}: {exc}")
    if problems:
        raise CatalogError("; ".join(problems))
    return cls(name=name, **values)


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _convert(value: Any, hint: Any) -> Any:
    """`value` as the annotated type; TypeError says what was expected and what was found."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        return _convert(value, next(option for option in options if option is not type(None)))
    if origin is collections.abc.Mapping:
        if not isinstance(value, dict):
            raise TypeError(f"expected a mapping, got {value!r}")
        key_type, value_type = typing.get_args(hint)
        return types.MappingProxyType({_convert(k, key_type): _convert(v, value_type) for k, v in value.items()})
    if isinstance(hint, type) and issubclass(hint, Enum):
        allowed = [member.value for member in hint]
        if value not in allowed:
            raise TypeError(f"expected one of {allowed}, got {value!r}")
        return hint(value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (str, bool) and isinstance(value, hint):
        return value
    raise TypeError(f"expected {getattr(hint, '__name__', hint)}, got {value!r}")
