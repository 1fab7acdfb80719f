"""Command-line flags from environment variables: `--admin-token` from CHAOS_UPSTREAM_ADMIN_TOKEN.

Containers and Kubernetes configure a process through its environment, so every flag of `serve`
also comes from CHAOS_UPSTREAM_<FLAG> (upper case, dashes as underscores). The variables are derived
from the parser's own actions, so a flag added later has its variable without more code.

Invariants: a flag given on the command line wins over its variable (a repeatable flag given once
replaces the whole list from the variable); a variable's value is converted and checked exactly as
the flag's would be, and a bad one is a ConfigError naming the variable; variables that name no
flag (CHAOS_UPSTREAM_REQUIRE_PROXIES, ...) are left alone; flags hidden from `--help` have none.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from typing import Any

from chaos_upstream.errors import ConfigError

PREFIX = "CHAOS_UPSTREAM_"

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
"""The words a switch's variable may hold, in any case: systemd's and Docker Compose's usual ones."""

SEPARATOR = ","
"""Between the values of a repeatable flag: a path or a PORT never holds one."""


class FromEnvironment(list):  # type: ignore[type-arg]
    """A repeatable flag's values, taken from its variable: the first flag given replaces them."""


class Append(argparse._AppendAction):
    """argparse's `append`, except that a list from the environment is replaced, not added to."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: str | None = None) -> None:
        if isinstance(getattr(namespace, self.dest, None), FromEnvironment):
            setattr(namespace, self.dest, [])
        super().__call__(parser, namespace, values, option)


def variable(action: argparse.Action) -> str:
    """CHAOS_UPSTREAM_ADMIN_TOKEN for `--admin-token`."""
    long = next(option for option in action.option_strings if option.startswith("--"))
    return PREFIX + long[2:].upper().replace("-", "_")


def configurable(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """The actions of `parser` that have a variable: its long options, but for help and hidden ones."""
    for action in parser._actions:
        long = any(option.startswith("--") for option in action.option_strings)
        if long and action.help is not argparse.SUPPRESS and not isinstance(action, argparse._HelpAction):
            yield action


def apply(parser: argparse.ArgumentParser, environ: Mapping[str, str], only: set[str] | None = None) -> None:
    """Make each set variable the default of its flag (of those in `only`, when given)."""
    for action in configurable(parser):
        name = variable(action)
        if name in environ and (only is None or name in only):
            action.default = _value(parser, action, name, environ[name])


def variables(parser: argparse.ArgumentParser) -> set[str]:
    return {variable(action) for action in configurable(parser)}


def _value(parser: argparse.ArgumentParser, action: argparse.Action, name: str, text: str) -> Any:
    """What the flag would hold if given `text` (each of a list's, for a repeatable flag)."""
    if isinstance(action, argparse._StoreConstAction):  # store_true, store_false, store_const
        if _switch(name, text):
            return action.const
        return (not action.const) if isinstance(action.const, bool) else None
    if isinstance(action, argparse._AppendAction):
        return FromEnvironment(_one(parser, action, name, text, part.strip()) for part in text.split(SEPARATOR) if part.strip())
    return _one(parser, action, name, text, text)


def _switch(name: str, text: str) -> bool:
    word = text.strip().lower()
    if word not in TRUE + FALSE:
        raise ConfigError(f"{name}={text!r}: give one of {', '.join(w for w in TRUE + FALSE if w)}")
    return word in TRUE


def _one(parser: argparse.ArgumentParser, action: argparse.Action, name: str, text: str, part: str) -> Any:
    """One value (`part` of the variable's `text`) converted and checked as argparse does for the
    flag; ConfigError naming the variable."""
    strings = [part] if action.nargs in (None, argparse.OPTIONAL) else part.split()
    try:
        return parser._get_values(action, strings)
    except argparse.ArgumentError as exc:
        raise ConfigError(f"{name}={text!r}: {exc.message}") from None
