"""The journal: one record per connection and per request, in memory and as JSON lines.

Invariant: a record is written once, when what it describes has ended (a request when its plan has
run or been cut short, a connection when it is closed), and a record written to a file is flushed
before `write` returns, so a SIGTERM loses nothing already written.

Strategy: records are kept in memory as (ordinal, type, probe, JSON text) tuples, not as dicts. A tuple of
strings is untracked by the garbage collector, so a full journal (a hundred thousand records with
nested lists and dicts) adds nothing to every collection pause; a record is parsed again only when
asked for, and the JSON text is the same one written to the file.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Any, TextIO

KEEP = 100_000
"""Records kept in memory: hours of a busy sidecar's probes at a few hundred bytes each (~50 MB)."""

Record = dict[str, Any]
Entry = tuple[int, str | None, str | None, str]
"""A record in memory: its ordinal (1-based, in the order written), its type, its probe id, its JSON text."""


class Journal:
    """Append-only records; the newest KEEP in memory, all of them in the file when one is given."""

    def __init__(self, path: Path | str | None = None, *, keep: int = KEEP) -> None:
        self._records: deque[Entry] = deque(maxlen=keep)
        self._file: TextIO | None = open(path, "a", encoding="utf-8") if path is not None else None  # noqa: SIM115
        self.total = 0
        """Records written since the journal was opened, including those no longer in memory."""
        self._running: dict[int, Record] = {}
        self._by_probe: dict[str, deque[Entry]] = {}
        """The records in memory of each probe, so that a probe's are found without a scan."""

    def begin(self, record: Record) -> None:
        """Show `record` (still being filled in) to readers that ask for running records, until written."""
        self._running[id(record)] = record

    def write(self, record: Record) -> None:
        self._running.pop(id(record), None)
        entry = (self.total + 1, record.get("type"), record.get("probe"), json.dumps(record, separators=(",", ":")))
        if len(self._records) == self._records.maxlen:
            self._forget(self._records[0])
        self._records.append(entry)
        if entry[2] is not None:
            self._by_probe.setdefault(entry[2], deque()).append(entry)
        self.total += 1
        if self._file is not None:
            self._file.write(entry[3] + "\n")
            self._file.flush()

    def records(self, *, probe: str | None = None, type: str | None = None, running: bool = False) -> list[Record]:
        """Records in the order written, optionally only one probe's or one type's; with `running`,
        then copies of those still in progress (a request whose plan is still running)."""
        source = self._records if probe is None else self._by_probe.get(probe, ())
        done = [json.loads(text) for _, kind, probe_id, text in source if _wanted(kind, probe_id, probe, type)]
        live = [
            dict(r, running=True)
            for r in self._running.values()
            if running and _wanted(r.get("type"), r.get("probe"), probe, type)
        ]
        return done + live

    def _forget(self, oldest: Entry) -> None:
        """Drop the oldest record, about to leave memory, from its probe's index too."""
        if oldest[2] is not None:
            kept = self._by_probe[oldest[2]]
            kept.popleft()
            if not kept:
                del self._by_probe[oldest[2]]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _wanted(kind: str | None, probe_id: str | None, probe: str | None, type: str | None) -> bool:
    return (probe is None or probe_id == probe) and (type is None or kind == type)
