"""The policy registry: every policy, built-in or third-party, is found by (kind, name).

Built-ins register with the `@register(kind, name)` decorator; third-party packages declare
entry points in the group `servesim.<kind>` (`name = "package.module:Class"`). Either way the
class is checked when it is registered: it must have the kind's methods with signatures that
accept the engine's calls, and a pydantic `Params` model. A bad plug-in fails loudly, naming
itself and the mismatch; a name taken by a different class is an error, never silently replaced; registering the same
class again (same module and qualified name: a re-run notebook cell) replaces the earlier entry.
"""
from __future__ import annotations

import difflib
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from importlib.metadata import entry_points
from typing import Any, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError

from servesim.policies.base import (
    EvictionPolicy,
    LengthPredictor,
    PreemptionPolicy,
    QueuePolicy,
    RouterPolicy,
    SchedulerPolicy,
    TransferPolicy,
)
from servesim.policies.errors import PolicyError
from servesim.policies.intra_gpu import SplitPolicy

# kind -> (interface, the methods the engine calls with their positional arguments after self)
KINDS: dict[str, tuple[type, dict[str, tuple[str, ...]]]] = {
    "scheduler": (SchedulerPolicy, {"schedule": ("replica", "now")}),
    "queue": (QueuePolicy, {"key": ("request", "replica", "now")}),
    "predictor": (LengthPredictor, {"predict": ("request", "replica", "now")}),
    "preemption": (PreemptionPolicy, {"select_victim": ("candidates", "now"), "mode": ("victim", "host", "now")}),
    "eviction": (EvictionPolicy, {"key": ("block", "now")}),
    "router": (RouterPolicy, {"route": ("request", "replicas", "now")}),
    "transfer": (TransferPolicy, {"plan": ("request", "source", "destinations", "now")}),
    "split": (SplitPolicy, {"prefill_share": ("split", "now")}),
}
ENTRY_POINT_PREFIX = "servesim."

T = TypeVar("T", bound=type)


@dataclass(frozen=True)
class PolicyEntry:
    kind: str
    name: str
    cls: type
    params_model: type[BaseModel]
    origin: str
    """`built-in` or the distribution that provides the plug-in."""

    @property
    def description(self) -> str:
        doc = (self.cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def parameters(self) -> dict[str, tuple[str, Any, str]]:
        """name -> (type, default, description) of each parameter."""
        out = {}
        for key, field in self.params_model.model_fields.items():
            type_name = _type_name(field.annotation)
            default = field.get_default(call_default_factory=True)
            if isinstance(default, Enum):
                default = default.value
            if isinstance(default, BaseModel):
                default = default.model_dump(mode="json")
            out[key] = (type_name, default, field.description or "")
        return out


def _type_name(annotation: Any) -> str:
    """`int`, `int | None`, `VictimOrder`; a Literal as its choices (`'deadline' | 'priority'`)."""
    if get_origin(annotation) is Literal:
        return " | ".join(repr(choice) for choice in get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


_REGISTRY: dict[tuple[str, str], PolicyEntry] = {}
_loaded = False


def register(kind: str, name: str) -> Callable[[T], T]:
    """Class decorator: make a policy available under `name` for its `kind`."""

    def decorate(cls: T) -> T:
        _add(kind, name, cls, "built-in")
        return cls

    return decorate


def _add(kind: str, name: str, cls: Any, origin: str) -> None:
    where = f"{kind} policy {name!r} ({getattr(cls, '__qualname__', cls)!s}, {origin})"
    if kind not in KINDS:
        raise PolicyError(f"{where}: unknown policy kind; kinds are {', '.join(KINDS)}")
    first = _REGISTRY.get((kind, name))
    if first is not None and not _same_class(first.cls, cls):
        raise PolicyError(
            f"{where}: the name is already registered by {first.cls.__qualname__} ({first.origin}); "
            "rename one of them"
        )
    _check_class(kind, cls, where)
    _REGISTRY[kind, name] = PolicyEntry(kind, name, cls, cls.Params, origin)


def _same_class(registered: type, cls: Any) -> bool:
    """The same definition run again (a notebook cell re-run): same module and qualified name."""
    return (getattr(cls, "__module__", None), getattr(cls, "__qualname__", None)) == (
        registered.__module__, registered.__qualname__)


def registered_name(cls: type) -> tuple[str, str] | None:
    """(kind, name) under which `cls` is registered, or None (a policy built without the registry)."""
    for (kind, name), entry in _REGISTRY.items():
        if entry.cls is cls:
            return kind, name
    return None


def _check_class(kind: str, cls: Any, where: str) -> None:
    """The class must look like its kind's interface to the engine that will call it."""
    interface, methods = KINDS[kind]
    if not isinstance(cls, type):
        raise PolicyError(f"{where}: expected a class, got {type(cls).__name__}")
    params = getattr(cls, "Params", None)
    if not (isinstance(params, type) and issubclass(params, BaseModel)):
        raise PolicyError(f"{where}: needs a nested pydantic `Params` model (subclass policies.PolicyParams)")
    for method, args in methods.items():
        function = getattr(cls, method, None)
        if function is None or not callable(function):
            raise PolicyError(
                f"{where}: missing method {method}({', '.join(args)}) of the {interface.__name__} interface"
            )
        if getattr(function, "__isabstractmethod__", False):
            raise PolicyError(f"{where}: method {method} is not implemented")
        try:
            inspect.signature(function).bind(None, *args)
        except TypeError:
            shown = inspect.signature(function)
            raise PolicyError(
                f"{where}: method {method}{shown} cannot be called as {method}(self, {', '.join(args)})"
            ) from None


def _ensure_loaded() -> None:
    """Register the built-ins, then every installed plug-in (once, on first use)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import servesim.policies.builtin  # noqa: F401  (registers the built-in policies)

    for kind in KINDS:
        for point in entry_points(group=ENTRY_POINT_PREFIX + kind):
            origin = f"plug-in {point.dist.name if point.dist else point.value}"
            try:
                cls = point.load()
            except Exception as exc:  # a broken plug-in must name itself, whatever it raised
                raise PolicyError(
                    f"{kind} policy {point.name!r} ({origin}): cannot load {point.value}: {type(exc).__name__}: {exc}"
                ) from exc
            _add(kind, point.name, cls, origin)


def policy_names(kind: str) -> list[str]:
    _ensure_loaded()
    return sorted(name for k, name in _REGISTRY if k == kind)


def get_policy(kind: str, name: str) -> PolicyEntry:
    _ensure_loaded()
    if kind not in KINDS:
        raise PolicyError(f"unknown policy kind {kind!r}; kinds are {', '.join(KINDS)}")
    entry = _REGISTRY.get((kind, name))
    if entry is None:
        valid = policy_names(kind)
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise PolicyError(f"unknown {kind} policy {name!r}; valid names: {', '.join(valid) or 'none'}.{hint}")
    return entry


def all_policies() -> list[PolicyEntry]:
    _ensure_loaded()
    return [_REGISTRY[key] for key in sorted(_REGISTRY)]


_VALIDATED: dict[tuple[type, str], BaseModel] = {}
"""Validated parameters by (class, canonical JSON of the raw parameters): loading, `prepare` and
every replica's `create_policy` (and nested policy references) ask for the same parameters;
each set is validated once and the frozen model shared."""


def validate_params(kind: str, name: str, params: Mapping[str, Any]) -> BaseModel:
    """Check `params` against the policy's model; errors name each bad key."""
    entry = get_policy(kind, name)
    try:
        key: tuple[type, str] | None = (entry.cls, json.dumps(dict(params), sort_keys=True))
    except (TypeError, ValueError):
        key = None  # parameters that are not plain data are validated every time
    if key is not None and key in _VALIDATED:
        return _VALIDATED[key]
    try:
        validated = entry.params_model.model_validate(dict(params))
    except ValidationError as exc:
        known = list(entry.params_model.model_fields)
        problems = "; ".join(_describe_param_error(err, known) for err in exc.errors())
        raise PolicyError(f"{kind} policy {name!r}: {problems}") from None
    if key is not None:
        _VALIDATED[key] = validated
    return validated


def _describe_param_error(err: Mapping[str, Any], known: list[str]) -> str:
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"its parameters are: {', '.join(known) or 'none'}"
        return f"{key}: unknown parameter; {hint}"
    message = err["msg"].removeprefix("Value error, ")
    if isinstance(err.get("ctx", {}).get("error"), PolicyError):
        return f"{key}: {message}"  # a nested policy's own error already names the bad value
    if not key:
        return message  # a check across parameters: its message names them and their values
    return f"{key}: {message} (got {err.get('input')!r})"


def create_policy(kind: str, name: str, params: Mapping[str, Any], **collaborators: Any) -> Any:
    """Build a policy from its YAML name and parameters, plus collaborators (`rng`, and a
    scheduler's `preemption` policy)."""
    validated = validate_params(kind, name, params)
    return get_policy(kind, name).cls(validated, **collaborators)
