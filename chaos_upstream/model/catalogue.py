"""The catalogue: the built-in scenarios plus the user's, by name.

Invariant: a Catalogue that constructs is consistent: names are unique within each source (a user
file may replace a built-in of the same name), and every rule that borrows another scenario's steps
names a scenario that exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from chaos_upstream.errors import ConfigError, Problem, UnknownScenario
from chaos_upstream.model.loading import Loc, read_document, scenario_files
from chaos_upstream.model.scenario import Scenario


def builtin_dir() -> Path:
    """Where the built-in scenario files are: inside the installed wheel, or `scenarios/` of a checkout."""
    packaged = Path(str(resources.files("chaos_upstream"))) / "scenarios"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "scenarios"


@dataclass(frozen=True)
class Entry:
    """A loaded scenario and the file it came from."""

    scenario: Scenario
    source: Path
    builtin: bool
    lines: Mapping[Loc, int]
    """The line of each field that names another scenario (see _borrowed), for problems found
    once every file is loaded, without keeping the node tree or reading the file again."""


class Catalogue:
    """Scenarios by name, in the order they were loaded (built-ins first)."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self._entries: dict[str, Entry] = {}
        for entry in entries:
            self._entries[entry.scenario.name] = entry
        self._check_references()

    @classmethod
    def load(cls, extra: Iterable[Path] = (), *, builtins: bool = True) -> Catalogue:
        """The built-ins, then every scenario file found at `extra` paths; all problems at once."""
        problems: list[Problem] = []
        entries = _load_all(scenario_files(builtin_dir()), True, problems) if builtins else []
        user_files: list[Path] = []
        for path in extra:
            try:
                user_files.extend(scenario_files(Path(path)))
            except ConfigError as exc:
                problems.extend(exc.problems)
        entries += _load_all(user_files, False, problems)
        if problems:
            raise ConfigError(problems)
        return cls(entries)

    def get(self, name: str) -> Scenario:
        try:
            return self._entries[name].scenario
        except KeyError:
            raise UnknownScenario(f"no scenario named {name!r}") from None

    def find(self, name: str) -> Scenario | None:
        """Scenario `name`, or None when there is none."""
        entry = self._entries.get(name)
        return None if entry is None else entry.scenario

    def entry(self, name: str) -> Entry:
        self.get(name)
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Scenario]:
        return (entry.scenario for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def _check_references(self) -> None:
        """Every scenario a rule borrows or a timeline event serves exists, and is request-level."""
        problems = [
            Problem(str(entry.source), entry.lines[loc], ".".join(map(str, loc)), problem)
            for entry in self._entries.values()
            for loc, name in _borrowed(entry.scenario)
            if (problem := self._unusable(name))
        ]
        if problems:
            raise ConfigError(problems)

    def _unusable(self, name: str) -> str:
        """Why scenario `name` cannot answer requests for another one, or ""."""
        if name not in self._entries:
            return f"no scenario named {name!r}"
        scenario = self._entries[name].scenario
        if scenario.connection_level or scenario.timeline:
            return f"{name!r} does not answer requests (it is connection-level or a timeline)"
        return ""


def _load_all(files: Iterable[Path], builtin: bool, problems: list[Problem]) -> list[Entry]:
    """Load every file, collecting problems; a name given twice in one source is a problem."""
    entries: list[Entry] = []
    seen: dict[str, Path] = {}
    for path in files:
        try:
            document = read_document(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        scenario = document.scenario
        if scenario.name in seen:
            message = f"scenario {scenario.name!r} is already defined in {seen[scenario.name]}"
            problems.append(Problem(str(path), 1, "name", message))
            continue
        seen[scenario.name] = path
        lines = {loc: document.line_of(loc) for loc, _ in _borrowed(scenario)}
        entries.append(Entry(scenario, path, builtin, lines))
    return entries


def _borrowed(scenario: Scenario) -> Iterator[tuple[Loc, str]]:
    """Where `scenario` names another scenario: each field's location and the name it gives."""
    for field, items in (("rules", scenario.rules), ("timeline", scenario.timeline)):
        for index, item in enumerate(items):
            if item.scenario is not None:
                yield (field, index, "scenario"), item.scenario
