"""Reading scenario files: YAML loaded safely, validated, every problem located at FILE:LINE.

Invariant: loading never raises anything but ConfigError for a bad file, and a ConfigError lists
every problem found in it, each with the file, the 1-based line and the dotted field path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from chaos_upstream.errors import ConfigError, Problem
from chaos_upstream.model.scenario import Scenario

SCENARIO_SUFFIXES = (".yaml", ".yml")


def load_file(path: Path) -> Scenario:
    """Parse and validate one scenario file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(str(path), 1, "", f"cannot read: {exc}")]) from exc
    return parse(text, str(path))


def parse(text: str, filename: str) -> Scenario:
    """Validate the YAML `text` of one scenario; `filename` only labels problems."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem(filename, line, "", f"invalid YAML: {problem}")]) from None
    if not isinstance(data, dict):
        raise ConfigError([Problem(filename, 1, "", "a scenario file holds one mapping (name: ..., steps: ...)")])
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_locate(error, node, filename) for error in exc.errors()]) from None


def _locate(error: Any, root: yaml.Node, filename: str) -> Problem:
    """Turn one pydantic error into a Problem, following its `loc` through the YAML node tree.

    Strategy: walk `loc` from the root; an element that names a union member (a step's `kind`, or
    a type name pydantic adds) rather than a key is skipped; the line is that of the deepest node
    reached, and a missing field is reported at its parent mapping.
    """
    node, path = root, []
    for element in error["loc"]:
        child = _child(node, element)
        if child is None and _is_union_tag(node, element):
            continue
        path.append(str(element))
        if child is None:
            break
        node = child
    message = error["msg"].removeprefix("Value error, ")
    return Problem(filename, node.start_mark.line + 1, ".".join(path), message)


def line_of(path: Path, loc: tuple[str | int, ...]) -> int:
    """The 1-based line of the field at `loc` in the YAML file at `path` (its nearest ancestor if absent)."""
    node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    for element in loc:
        child = _child(node, element)
        if child is None:
            break
        node = child
    return node.start_mark.line + 1


def _child(node: yaml.Node, element: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        return next((value for key, value in node.value if key.value == str(element)), None)
    if isinstance(node, yaml.SequenceNode) and isinstance(element, int) and element < len(node.value):
        return node.value[element]
    return None


def _is_union_tag(node: yaml.Node, element: Any) -> bool:
    """True when `element` is a discriminator value or a type label pydantic put into `loc`."""
    if not isinstance(element, str):
        return False
    if isinstance(node, yaml.MappingNode):
        kind = _child(node, "kind")
        if kind is not None and kind.value == element:
            return True
    return not element.isidentifier() or element[:1].isupper() or element in _TYPE_LABELS


_TYPE_LABELS = {"int", "str", "float", "bool", "list", "dict", "tuple", "literal", "function-plain", "function-after"}


def scenario_files(path: Path) -> list[Path]:
    """The scenario files at `path`: the file itself, or every *.yaml/*.yml below a folder, sorted."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in SCENARIO_SUFFIXES and p.is_file())
    if path.exists():
        return [path]
    raise ConfigError([Problem(str(path), 1, "", "no such file or folder")])
