"""YAML and JSON parsing that refuses what the standard parsers silently accept.

PyYAML and `json` keep the last of two equal keys, so a config or config.json with a repeated
key runs with a value the user did not mean; and YAML aliases let a few hundred bytes expand
into billions of nodes ("billion laughs"), which hangs whatever walks the result. Both are
refused here, with the line of the problem.
"""
from __future__ import annotations

from typing import Any

import yaml

MAX_YAML_NODES = 100_000  # expanded nodes: far above any real config or catalog, far below a bomb


class DuplicateKeyError(ValueError):
    """A mapping names the same key twice."""


class AliasExpansionError(yaml.YAMLError):
    """A YAML document whose aliases expand beyond MAX_YAML_NODES."""


class StrictYamlLoader(yaml.SafeLoader):
    """SafeLoader whose mappings refuse repeated keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # keys merged in with `<<: *base` may be overridden, as YAML intends
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, float, bool)) or key is None:
                continue  # PyYAML's own checks apply to other keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (lines {seen[key]} and {line}); keep one",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line saying what is wrong and where (the exception's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return where + (getattr(exc, "problem", None) or str(exc))


def load_yaml(text: str) -> Any:
    """The document in `text`; raises yaml.YAMLError for malformed YAML, repeated keys, alias bombs."""
    loader = StrictYamlLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_YAML_NODES:
            raise AliasExpansionError(
                f"the document expands to more than {MAX_YAML_NODES:,} values through its aliases (&anchor / *alias); "
                "write the values out instead of nesting aliases"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Nodes the document holds once every alias is expanded; each distinct node is counted once (memo)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = 1  # a recursive alias counts once instead of looping
    if isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total = 1 + sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    else:
        total = 1
    sizes[id(node)] = min(total, MAX_YAML_NODES + 1)
    return sizes[id(node)]


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook` for json.loads: a repeated key is an error, not silently the last value."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKeyError(f"key {key!r} appears twice in one object; keep one")
        result[key] = value
    return result
