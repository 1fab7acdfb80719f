"""Reading scenario files: YAML loaded safely, validated, every problem located at FILE:LINE.

Invariant: loading never raises anything but ConfigError for a bad file, and a ConfigError lists
every problem found in it, each with the file, the 1-based line and the dotted field path. Whatever
the file is, loading is bounded: it opens regular files only and never blocks on the open, reads at
most MAX_FILE_BYTES + 1 bytes, parses the YAML once, and refuses a tree deeper than MAX_DEPTH or
larger than MAX_NODES (aliases expanded) before anything walks it recursively.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from chaos_upstream.errors import ConfigError, Problem
from chaos_upstream.model.scenario import Scenario

SCENARIO_SUFFIXES = (".yaml", ".yml")

MAX_FILE_BYTES = 1024 * 1024
"""1 MiB: the built-in scenario files are under 1 KB and a hand-written one a few KB; a file larger
than this is a mistake (or /dev/zero behind a name), and refusing it keeps a check under a second."""

MAX_DEPTH = 32
"""Nesting cap: the model's deepest field (a rule's `when` inside `rules`, a duration's
distribution inside a step) is under 10 levels down; PyYAML composes recursively, a few Python
frames a level, so 32 stays far below Python's recursion limit of 1000."""

MAX_NODES = 10_000
"""Values in the tree, aliases expanded: a scenario has a few dozen to a few hundred. PyYAML composes
some 30,000 a second, so the cap keeps the worst file under MAX_FILE_BYTES (a flat list of half a
million numbers, 30 s to compose) near a third of a second, and turns a "billion laughs" into one
problem."""

Loc = tuple[str | int, ...]
"""A field's place in a scenario file: keys and list indices from the top, as pydantic reports it."""

_FILE_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}

OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
"""O_NONBLOCK: should a FIFO be swapped in after the stat, opening it does not wait for a writer
(and fstat then refuses it); O_NOCTTY: a terminal swapped in never becomes ours."""


@dataclass(frozen=True)
class Document:
    """A validated scenario and the YAML node tree it was built from, for the lines of its fields."""

    scenario: Scenario
    root: yaml.Node

    def line_of(self, loc: Loc) -> int:
        """The 1-based line of the field at `loc` (its nearest ancestor if absent)."""
        node = self.root
        for element in loc:
            child = _child(node, element)
            if child is None:
                break
            node = child
        return node.start_mark.line + 1


def load_file(path: Path) -> Scenario:
    """Parse and validate one scenario file."""
    return read_document(path).scenario


def read_document(path: Path) -> Document:
    """Parse and validate one scenario file, keeping its node tree."""
    return parse_document(_read_text(path), str(path))


def parse(text: str, filename: str) -> Scenario:
    """Validate the YAML `text` of one scenario; `filename` only labels problems."""
    return parse_document(text, filename).scenario


def parse_document(text: str, filename: str) -> Document:
    """Validate the YAML `text` of one scenario, keeping its node tree; `filename` labels problems."""
    root, data = _load_yaml(text, filename)
    if root is None:
        raise _refuse(filename, "empty: a scenario file holds one mapping (name: ..., steps: ...)")
    if not isinstance(data, dict):
        raise _refuse(filename, "a scenario file holds one mapping (name: ..., steps: ...)")
    try:
        return Document(Scenario.model_validate(data), root)
    except ValidationError as exc:
        raise ConfigError([_locate(error, root, filename) for error in exc.errors()]) from None


def _read_text(path: Path) -> str:
    """The UTF-8 text of the regular file at `path`; anything else is a ConfigError naming why."""
    data = _read_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be decoded (is this a binary file?)"
        raise _refuse(str(path), message, line) from None


def _read_bytes(path: Path) -> bytes:
    """At most MAX_FILE_BYTES of the regular file at `path`.

    Strategy: stat first, so a FIFO, a device or a socket is refused without being opened; open
    with OPEN_FLAGS and fstat the open file, which closes the race with a file swapped in between;
    read one byte past the cap at most, so a file that grows (or never ends) costs no more.
    """
    try:
        _check_regular(path, os.stat(path))
        fd = os.open(path, OPEN_FLAGS)
        try:
            _check_regular(path, os.fstat(fd))
            return _read_capped(path, fd)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise _refuse(str(path), "no such file or folder") from None
    except OSError as exc:
        raise _refuse(str(path), f"cannot read: {exc.strerror or exc}") from None


def _check_regular(path: Path, info: os.stat_result) -> None:
    """Refuse anything but a regular file of at most MAX_FILE_BYTES (by its stat)."""
    if not stat.S_ISREG(info.st_mode):
        kind = _FILE_KINDS.get(stat.S_IFMT(info.st_mode), "another kind of file")
        raise _refuse(str(path), f"not a regular file ({kind}): scenarios are read from regular files only")
    if info.st_size > MAX_FILE_BYTES:
        raise _too_large(path)


def _read_capped(path: Path, fd: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_FILE_BYTES:
        chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    raise _too_large(path)


def _too_large(path: Path) -> ConfigError:
    return _refuse(str(path), f"larger than {MAX_FILE_BYTES:,} bytes, the most a scenario file may be (they are a few KB)")


def _refuse(filename: str, message: str, line: int = 1) -> ConfigError:
    """The error for a problem with a file as a whole (no field), at `line`."""
    return ConfigError([Problem(filename, line, "", message)])


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that stops composing past MAX_DEPTH levels (instead of running out of
    Python stack) or MAX_NODES nodes, and reports a value its constructors cannot build (a 13th
    month, an integer of 5,000 digits) as a YAML error at its line instead of raising ValueError."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self._nodes += 1
        if self._depth >= MAX_DEPTH or self._nodes > MAX_NODES:
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, _excess(self._depth + 1, self._nodes), mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(None, None, f"cannot read this value: {exc}", node.start_mark) from None


def _load_yaml(text: str, filename: str) -> tuple[yaml.Node | None, Any]:
    """The node tree of `text` and the data built from it, composed once; (None, None) if empty."""
    try:
        loader = _BoundedLoader(text)  # its reader refuses a non-printable character here
        try:
            root = loader.get_single_node()
            if root is None:
                return None, None
            _check_expanded(root, filename)
            return root, loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc, text, filename)]) from None


def _yaml_problem(exc: yaml.YAMLError, text: str, filename: str) -> Problem:
    """One line for a YAML error: at its mark, or at the character a reader error names."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else text.count("\n", 0, getattr(exc, "position", 0)) + 1
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return Problem(filename, line, "", f"invalid YAML: {problem}")


def _check_expanded(root: yaml.Node, filename: str) -> None:
    """Refuse a tree deeper than MAX_DEPTH or of more than MAX_NODES values, aliases expanded.

    Strategy: an iterative walk that follows aliases (PyYAML composes an alias as the very node its
    anchor names), so a "billion laughs" costs MAX_NODES steps at most, and an alias inside its own
    anchor, a cycle, ends at the depth cap. Validation and line lookups walk only trees that pass.
    """
    stack = [(root, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH or count > MAX_NODES:
            message = f"invalid YAML: {_excess(depth, count)} once aliases are expanded"
            raise _refuse(filename, message, node.start_mark.line + 1)
        stack.extend((child, depth + 1) for child in _children(node))


def _excess(depth: int, count: int) -> str:
    """Which cap a node at `depth`, the `count`-th, is past."""
    return f"nested deeper than {MAX_DEPTH} levels" if depth > MAX_DEPTH else f"more than {MAX_NODES:,} values"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return node.value if isinstance(node, yaml.SequenceNode) else []


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
    """The scenario files at `path`: the path itself, or the regular *.yaml/*.yml files below a
    folder, sorted. In a folder anything else (a FIFO, a device, a dangling link) is skipped; a path
    named itself is always returned, for load_file to refuse with its reason."""
    try:
        folder = stat.S_ISDIR(os.stat(path).st_mode)
    except FileNotFoundError:
        raise _refuse(str(path), "no such file or folder") from None
    except OSError:
        return [path]
    if not folder:
        return [path]
    try:
        return sorted(p for p in path.rglob("*") if p.suffix in SCENARIO_SUFFIXES and p.is_file())
    except OSError as exc:
        raise _refuse(str(path), f"cannot read the folder: {exc.strerror or exc}") from None
