"""The commands about scenario files: `validate` (check them), `list` (the loaded scenarios) and
`schema` (the JSON Schema of a file)."""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from chaos_upstream.commands import EXIT_OK, EXIT_USAGE
from chaos_upstream.commands.output import console
from chaos_upstream.errors import ConfigError
from chaos_upstream.model.catalogue import Catalogue
from chaos_upstream.model.loading import load_file, scenario_files
from chaos_upstream.model.schema import scenario_schema


def validate(args: argparse.Namespace) -> int:
    """Every problem of every file, one line each (EXIT_USAGE), or how many files are valid."""
    problems = []
    count = 0
    for path in args.paths:
        try:
            files = scenario_files(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        for file in files:
            count += 1
            try:
                load_file(file)
            except ConfigError as exc:
                problems.extend(exc.problems)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{count} scenario file{'s' if count != 1 else ''} valid")
    return EXIT_USAGE if problems else EXIT_OK


def listing(args: argparse.Namespace) -> int:
    catalogue = Catalogue.load(args.scenarios)
    table = Table("name", "phase", "expected", "description", title=f"{len(catalogue)} scenarios")
    for scenario in catalogue:
        expected = scenario.expect.text()
        table.add_row(scenario.name, scenario.phase, expected, scenario.description)
    console().print(table)
    return EXIT_OK


def schema(args: argparse.Namespace) -> int:
    print(json.dumps(scenario_schema(), indent=2))
    return EXIT_OK
