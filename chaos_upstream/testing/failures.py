"""What a failing test says: an assertion on a verdict, and the sections a failure report gets.

Invariant: a failure report tells what happened without opening a log: every probe of the test is
explained (once: not again when the failure message already explains it), the requests that were
not probes are listed from the journal, and every proxy started for the test shows its error log.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chaos_upstream.proxies import RunningProxy
from chaos_upstream.records import RequestRecord
from chaos_upstream.verifier.probe import Result, what_was_done

JOURNAL_LINES = 20
"""Requests (other than probes) listed per upstream in a failure report: the latest ones."""

LOG_LINES = 40
"""Lines of a proxy's error log in a failure report: the last ones (the file has them all)."""


def assert_verdict(result: Result, expected: str = "pass") -> None:
    """Fail with the result's whole account unless its verdict is `expected`."""
    __tracebackhide__ = True
    if result.verdict != expected:
        raise AssertionError(f"verdict {result.verdict!r}, expected {expected!r}:\n{result.explain()}")


def failure_sections(upstreams: Iterable[Any], proxies: Iterable[RunningProxy], shown: str) -> list[tuple[str, str]]:
    """(title, text) report sections about a failed test's upstreams and proxies; `shown` is the
    failure's own text, whose explained probes are not repeated."""
    sections = []
    for upstream in upstreams:
        unexplained = [result.explain() for result in upstream.results if f"probe {result.probe_id})" not in shown]
        if unexplained:
            sections.append((f"chaos-upstream probes ({upstream.url})", "\n\n".join(unexplained)))
        requests = [r for r in upstream.journal.records(type="request", running=True) if isinstance(r, RequestRecord) and r.probe is None]
        if requests:
            listing = _latest([_request_line(record) for record in requests], JOURNAL_LINES, "requests")
            sections.append((f"chaos-upstream requests other than probes ({upstream.url})", listing))
    for proxy in proxies:
        log = proxy.error_log().splitlines()
        sections.append((f"{proxy.name} {proxy.version} error log ({proxy.url})",
                         _latest(log, LOG_LINES, f"lines, in {proxy.log_path}") or "(empty)"))
    return sections


def _latest(lines: list[str], keep: int, what: str) -> str:
    """The last `keep` lines, after a note of how many came before."""
    earlier = [f"({len(lines) - keep} earlier {what})"] if len(lines) > keep else []
    return "\n".join(earlier + lines[-keep:])


def _request_line(record: RequestRecord) -> str:
    """`0.012 s conn 3: GET /x -> healthy (default): send 150 B; keep-alive`"""
    scenario = record.scenario or f"no scenario ({record.error})"
    return (f"{record.t:.3f} s conn {record.conn}: {record.method} {record.target} -> "
            f"{scenario} ({record.chosen_by}): {what_was_done(record)}")
