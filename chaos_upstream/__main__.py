"""`python -m chaos_upstream` is the `chaos-upstream` command; the console script calls `main` here too.

`health` runs without importing the rest of the command line: container probes start it every few
seconds, and importing everything costs ten times the CPU that `health` needs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from chaos_upstream.errors import unwrap


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["health"]:
        from chaos_upstream import health

        return health.main(argv[1:])
    try:
        from chaos_upstream import cli

        return cli.main(argv)
    except BaseException as exc:  # Ctrl-C in a command with no SIGINT of its own (check, matrix), or while importing
        if unwrap(exc, KeyboardInterrupt) is None:  # trio's nurseries wrap it in exception groups
            raise
        print("chaos-upstream: interrupted", file=sys.stderr)
        return INTERRUPTED


INTERRUPTED = 130
"""The exit status after Ctrl-C: 128 + SIGINT, as a shell reports a process that SIGINT ended."""


if __name__ == "__main__":
    raise SystemExit(main())
