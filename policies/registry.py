"""The policy registry: every policy, built-in or third-party, is found by (kind, name).

A policy class declares a nested pydantic `Params` model; YAML parameters are validated against
it, so an unknown or mistyped parameter is an error naming the policy and the key.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

KINDS = ("scheduler", "preemption", "router")

T = TypeVar("T", bound=type)


class PolicyError(ValueError):
    """An unknown policy name, bad parameters, or a broken plug-in."""


@dataclass(frozen=True)
class PolicyEntry:
    kind: str
    name: str
    cls: type
    params_model: type[BaseModel]

    @property
    def description(self) -> str:
        doc = (self.cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def parameters(self) -> dict[str, tuple[str, Any, str]]:
        """name -> (type, default, description) of each parameter."""
        out = {}
        for key, field in self.params_model.model_fields.items():
            type_name = getattr(field.annotation, "__name__", str(field.annotation))
            out[key] = (type_name, field.default, field.description or "")
        return out


_REGISTRY: dict[tuple[str, str], PolicyEntry] = {}


def register(kind: str, name: str) -> Callable[[T], T]:
    """Class decorator: make a policy available under `name` for its `kind`."""
    if kind not in KINDS:
        raise PolicyError(f"unknown policy kind {kind!r}; kinds are {', '.join(KINDS)}")

    def decorate(cls: T) -> T:
        if (kind, name) in _REGISTRY:
            raise PolicyError(f"{kind} policy {name!r} is registered twice ({_REGISTRY[kind, name].cls.__qualname__} and {cls.__qualname__})")
        params = getattr(cls, "Params", None)
        if not (isinstance(params, type) and issubclass(params, BaseModel)):
            raise PolicyError(f"{kind} policy {name!r} ({cls.__qualname__}) needs a nested pydantic `Params` model")
        _REGISTRY[kind, name] = PolicyEntry(kind, name, cls, params)
        return cls

    return decorate


def _ensure_builtins_loaded() -> None:
    import policies.builtin  # noqa: F401  (registers the built-in policies)


def policy_names(kind: str) -> list[str]:
    _ensure_builtins_loaded()
    return sorted(name for k, name in _REGISTRY if k == kind)


def get_policy(kind: str, name: str) -> PolicyEntry:
    _ensure_builtins_loaded()
    entry = _REGISTRY.get((kind, name))
    if entry is None:
        valid = policy_names(kind)
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise PolicyError(f"unknown {kind} policy {name!r}; valid names: {', '.join(valid)}.{hint}")
    return entry


def all_policies() -> list[PolicyEntry]:
    _ensure_builtins_loaded()
    return [_REGISTRY[key] for key in sorted(_REGISTRY)]


def validate_params(kind: str, name: str, params: Mapping[str, Any]) -> BaseModel:
    """Check `params` against the policy's model; errors name each bad key."""
    entry = get_policy(kind, name)
    try:
        return entry.params_model.model_validate(dict(params))
    except ValidationError as exc:
        known = list(entry.params_model.model_fields)
        problems = "; ".join(_describe_param_error(err, known) for err in exc.errors())
        raise PolicyError(f"{kind} policy {name!r}: {problems}") from None


def _describe_param_error(err: Mapping[str, Any], known: list[str]) -> str:
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"its parameters are: {', '.join(known) or 'none'}"
        return f"{key}: unknown parameter; {hint}"
    return f"{key}: {err['msg']} (got {err.get('input')!r})"


def create_policy(kind: str, name: str, params: Mapping[str, Any], **collaborators: Any) -> Any:
    """Build a policy from its YAML name and parameters (plus collaborators such as a preemption policy)."""
    validated = validate_params(kind, name, params)
    return get_policy(kind, name).cls(validated, **collaborators)
