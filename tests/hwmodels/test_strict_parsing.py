"""Strict YAML/JSON parsing: repeated keys and alias bombs are refused, ordinary documents load."""
import json

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from servesim.hwmodels.strict_parsing import (
    MAX_YAML_NODES,
    AliasExpansionError,
    DuplicateKeyError,
    load_yaml,
    unique_keys,
    yaml_problem,
)


def bomb(levels: int, width: int = 9) -> str:
    lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_a_repeated_key_names_both_lines():
    with pytest.raises(yaml.constructor.ConstructorError) as caught:
        load_yaml("name: a\nseed: 1\nname: b\n")
    assert "'name' appears twice (lines 1 and 3)" in yaml_problem(caught.value)
    assert yaml_problem(caught.value).startswith("line 3, column 1: ")


def test_a_repeated_key_in_a_nested_flow_mapping_is_refused():
    with pytest.raises(yaml.constructor.ConstructorError, match="'kind' appears twice"):
        load_yaml("cost_model: {kind: constant, kind: roofline}\n")


def test_merge_keys_may_be_overridden_as_yaml_intends():
    assert load_yaml("base: &b {x: 1, y: 2}\nd: {<<: *b, x: 3}\n")["d"] == {"x": 3, "y": 2}


def test_a_billion_laughs_document_is_refused_before_it_is_built():
    with pytest.raises(AliasExpansionError, match="aliases"):
        load_yaml(bomb(9) + "workload: *l8\n")


def test_modest_aliases_and_recursive_ones_load():
    assert load_yaml(bomb(3))["l2"] == [[["x"] * 9] * 9] * 9
    recursive = load_yaml("a: &a [1, *a]\n")["a"]
    assert recursive[1] is recursive


def test_the_node_bound_is_exact_at_the_limit():
    width = 316  # 1 + 316 * (1 + 316) = 100,173 nodes for the last list alone
    assert 1 + width * (1 + width) > MAX_YAML_NODES
    with pytest.raises(AliasExpansionError):
        load_yaml(bomb(2, width))


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.integers() | st.text(max_size=8), max_size=20))
def test_documents_without_repeats_load_as_safe_load_does(data):
    text = yaml.safe_dump(data)
    assert load_yaml(text) == yaml.safe_load(text)


def test_json_objects_with_a_repeated_key_are_refused():
    assert json.loads('{"a": 1, "b": {"a": 2}}', object_pairs_hook=unique_keys) == {"a": 1, "b": {"a": 2}}
    with pytest.raises(DuplicateKeyError, match="'a' appears twice"):
        json.loads('{"a": 1, "b": 2, "a": 3}', object_pairs_hook=unique_keys)
