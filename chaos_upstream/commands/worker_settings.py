"""The settings a worker of `serve --workers N` runs with: the supervisor's parsed `serve` arguments,
sent whole as one JSON object (see server/workers.py), never rebuilt flag by flag.

Invariants: every attribute of the supervisor's namespace reaches each worker, equal to the
supervisor's (its command and function aside, which the worker parses itself), but for what is each
worker's own (OWN); a value JSON has no type for is sent as its text and made again by its flag's own
type, so it is what the flag would have given.
"""

from __future__ import annotations

import argparse
from typing import Any

PARSED = ("command", "func")
"""What the worker's own parse of `serve --worker K` gives, not sent."""

OWN = ("port", "worker", "workers", "admin_port", "seed")
"""What each worker has of its own: the supervisor's port, its index, no workers or admin API of its
own, and a seed of its own (the supervisor's plus its index), so that their random draws differ."""


def for_worker(args: argparse.Namespace, port: int, index: int) -> dict[str, Any]:
    """Worker `index`'s settings as a JSON object: the supervisor's, with its own (OWN)."""
    values = {dest: value for dest, value in vars(args).items() if dest not in PARSED}
    values.update(port=[port], worker=index, workers=1, admin_port=None,
                  seed=None if args.seed is None else args.seed + index)
    return {dest: _plain(value) for dest, value in values.items()}


def received(parser: argparse.ArgumentParser, args: argparse.Namespace, sent: dict[str, Any]) -> argparse.Namespace:
    """The worker's arguments: its own parse (`args`, from `parser`) with every setting `sent` in place."""
    actions = {action.dest: action for action in parser._actions}
    values = vars(args) | {dest: _typed(actions.get(dest), value) for dest, value in sent.items()}
    return argparse.Namespace(**values)


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(one) for one in value]
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def _typed(action: argparse.Action | None, value: Any) -> Any:
    if isinstance(value, list):
        return [_typed(action, one) for one in value]
    convert = None if action is None else action.type
    return convert(value) if isinstance(value, str) and callable(convert) else value
