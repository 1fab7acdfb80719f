"""The journal: one record per connection and per request, in memory and as JSON lines.

Invariants: a record is written once, when what it describes has ended (a request when its plan has
run or been cut short, a connection when it is closed); a record written to a file is queued for
the file's writer thread when `write` returns, and close() writes every record still queued, so a
SIGTERM, which ends in close(), loses nothing already written. Every string in a record
is capped (FIELD_LIMIT) before it is kept or written, so memory and file hold the same capped
record. The records in memory take at most `memory` bytes (estimated: what each record holds of
its own, see `_weighed`) and number at most `keep`; the oldest leave first, counted in `dropped`.

Strategy: records are kept in memory packed (records.pack: tuples of plain values), not as objects
nor as JSON. Such tuples are untracked by the garbage collector, so a full journal (a hundred
thousand records) adds nothing to every collection pause; packing costs a third of encoding, and
a record is turned into JSON only when it is written to the file or served, into an object only
when asked for.
"""

from __future__ import annotations

import bisect
import itertools
import json
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from chaos_upstream.records import KINDS, NO_RESPONSE, PLAIN, PLANNED_KINDS, Packed, Record, encode_packed, pack, parse, to_json, unpack
from chaos_upstream.server.journal_file import KEEP_FILES, JournalFile

KEEP = 100_000
"""Records kept in memory at most, however small: hours of a busy sidecar's probes."""

MEMORY = 64 * 1024 * 1024
"""Bytes the records in memory may take: a quarter of a sidecar container's usual 256 MiB limit. A
request record with a probe id of its own takes ~1.7 KB (~1 KB packed, the rest the probe's index),
its connection's ~400 bytes: this holds the last ~32,000 probed requests."""

FIELD_LIMIT = 2048
"""Characters kept of any string in a record (target, probe id, header value, error): a long URL
fits (browsers and CDNs stop near 2 KB); the rest is cut, with a marker saying how much."""

BODY_LIMIT = 64 * 1024
"""Characters kept of a recorded request body (`request_body: record`): the 64 KiB the scenario
model promises, which is what the server reads into the record (reading.RECORD_BODY)."""

LIMITS = {"body": BODY_LIMIT}
"""Fields with a limit of their own; every other string gets FIELD_LIMIT."""

SLOT = 8
"""Bytes of one pointer: an entry's slot in the records deque, and in its probe's."""

ENTRY_COST = sys.getsizeof((0, None, None, 0)) + sys.getsizeof(2**40) * 2 + SLOT
"""Bytes of an entry beyond its values' slots and what they refer to: its tuple's header and first
four slots, its ordinal and its size, its slot in the deque."""

PROBE_COST = sys.getsizeof(deque()) + 64
"""Bytes of a probe's index: its deque, and its slot in the index dict (a key, a value and a hash,
at the dict's two-thirds load)."""

FLOAT_COST = sys.getsizeof(0.5)
FROM_PEER = ("target", "probe", "method", "body", "error", "peer")
"""The strings of a record that come from the peer: of any length, so capped."""
SHARED = ("probe", "method")
"""Strings from the peer not counted with their record: a probe id is counted with its index, a
method is one of a few strings every record shares (the reader interns it)."""
PEERS = {
    kind: tuple((at, LIMITS.get(name, FIELD_LIMIT), name not in SHARED) for at, name in enumerate(names) if name in FROM_PEER)
    for kind, names in PLAIN.items()
}
"""Each class's strings from the peer: where they sit among its packed values, their limit, and
whether they are counted with it."""
FLOATS = {kind: sum(f.type == "float" or f.type.startswith("float ") for f in fields(kind)) for kind in PLAIN}
PACKED_ACTIONS = {kind: len(PLAIN[kind]) + len(NO_RESPONSE) for kind in PLANNED_KINDS}
"""Where a packed planned record's actions begin: three values each, one of them a float."""

ENCODE = json.JSONEncoder(separators=(",", ":")).encode
"""A record's JSON text, compact: one encoder for every record (`json.dumps` with separators builds
a new one per call, a third of what encoding a request's record cost)."""

Entry = tuple[Any, ...]
"""A record in memory, one flat tuple: its ordinal (1-based, in the order written), its type
(records.KINDS), its probe id, the bytes it is counted for, then its values (records.pack). Plain
values only, so that the first collection that sees it untracks it (a class or a nested tuple in it
would keep it tracked for longer)."""

VALUES = 4
"""Where an entry's values begin."""


class Journal:
    """Append-only records; the newest in memory (within `keep` records and `memory` bytes), all of
    them in the file when one is given (rotated past `max_bytes`, `keep_files` old files kept).
    `say` hears the file's trouble (a full disk) in one line when it begins and one when it ends."""

    def __init__(
        self, path: Path | str | None = None, *, keep: int = KEEP, memory: int = MEMORY,
        max_bytes: int | None = None, keep_files: int = KEEP_FILES, say: Callable[[str], None] | None = None,
    ) -> None:
        self._records: deque[Entry] = deque()
        self.keep = keep
        self.memory = memory
        self._file = None if path is None else JournalFile(path, max_bytes=max_bytes, keep=keep_files, say=say)
        self.total = 0
        """Records written since the journal was opened, including those no longer in memory."""
        self.dropped = 0
        """Records that left memory to keep it within its bounds (the file, if any, still has them)."""
        self.held = 0
        """Bytes the records in memory take, estimated: their JSON text and the objects holding it."""
        self._running: dict[object, Callable[[], Record]] = {}
        """What each record still being made (a request whose plan runs) is so far, by its key."""
        self._by_probe: dict[str, deque[Entry]] = {}
        """The records in memory of each probe, so that a probe's are found without a scan."""

    def begin(self, key: object, snapshot: Callable[[], Record]) -> None:
        """Show `snapshot()`, what a record still being made is so far (marked running), to readers
        that ask for running records, until the record is written with the same `key`."""
        self._running[key] = snapshot

    def write(self, record: Record, *, key: object = None) -> None:
        """Keep `record`, its strings capped, in memory (packed) and in the file (JSON; a probe id over
        FIELD_LIMIT too: `page` caps the id it is asked for the same way); it ends the running
        record begun with `key`, if any."""
        if key is not None:
            del self._running[key]
        kind, values = type(record), pack(record)
        size, over = _weighed(kind, values)
        if over:  # the rare record with a string over its limit
            values = tuple(capped(value, LIMITS.get(name, FIELD_LIMIT)) for name, value in itertools.zip_longest(PLAIN[kind], values))
            size, _ = _weighed(kind, values)
        self.total += 1
        probe = getattr(record, "probe", None)
        if probe is not None:
            probe = capped(probe)
            size += sys.getsizeof(probe) + SLOT
        self._remember((self.total, kind.type, probe, size, *values))
        if self._file is not None:
            self._file.write(encode_packed(kind, values).encode() + b"\n")

    @property
    def unwritten(self) -> int:
        """Records the file could not take (a full, failing or too slow disk); 0 without a file. It
        lags by the records still queued for the file: exact after flush() or close()."""
        return 0 if self._file is None else self._file.unwritten

    def flush(self) -> None:
        """Wait until the file has taken (or counted unwritten) every record written so far."""
        if self._file is not None:
            self._file.flush()

    def reopen(self) -> None:
        """Open the file's path again: logrotate moved the file away and says so with SIGHUP."""
        if self._file is not None:
            self._file.reopen()

    def records(self, *, probe: str | None = None, type: str | None = None, running: bool = False) -> list[Record]:
        """Records in the order written, optionally only one probe's or one type's; with `running`,
        then those still in progress (a request whose plan is still running), as they are so far."""
        source = self._records if probe is None else self._by_probe.get(capped(probe), ())
        kept = [unpack(KINDS[entry[1]], entry[VALUES:]) for entry in source if type is None or entry[1] == type]
        if running:
            kept += [parse(data) for data in self.page(probe=probe, type=type, running=True, since=self.total).running]
        return kept

    def page(
        self, *, probe: str | None = None, type: str | None = None, running: bool = False, since: int = 0,
        limit: int | None = None, budget: int | None = None,
    ) -> Page:
        """At most `limit` of the records written after ordinal `since`, in the order written, as
        their JSON texts (never parsed again), stopping after the record that brings the texts to
        `budget` characters; with `running` and on the last page only, then capped copies of those
        still in progress, as many as the limit and the budget leave room for (they have no ordinal
        to page by: the next page shows those still running then). A probe id over FIELD_LIMIT
        finds its records as written, capped. Costs O(log n) to find `since`, then the records scanned."""
        probe = None if probe is None else capped(probe)
        source = self._records if probe is None else self._by_probe.get(probe, ())
        after = itertools.islice(source, bisect.bisect_right(source, since, key=_ordinal), None)
        taken: list[tuple[int, str]] = []
        size, more = 0, False
        for entry in (entry for entry in after if _wanted(entry[1], entry[2], probe, type)):
            if len(taken) == limit or (budget is not None and size >= budget):
                more = True
                break
            taken.append((entry[0], encode_packed(KINDS[entry[1]], entry[VALUES:])))
            size += len(taken[-1][1])
        oldest = self._records[0][0] if self._records else self.total + 1
        live: list[dict[str, Any]] = []
        for snapshot in list(self._running.values()) if running and not more else ():
            data = capped(to_json(snapshot()))
            if not _wanted(data["type"], data.get("probe"), probe, type):
                continue
            if len(taken) + len(live) == limit or (budget is not None and size >= budget):
                break
            live.append(data)
            size += len(ENCODE(live[-1]))
        return Page(
            texts=[text for _, text in taken], ordinals=[ordinal for ordinal, _ in taken],
            next=taken[-1][0] if more else max(since, self.total), more=more, skipped=max(0, oldest - 1 - since), running=live,
        )

    def _remember(self, entry: Entry) -> None:
        """Keep `entry` in memory and in its probe's index, then forget the oldest past the bounds."""
        self._records.append(entry)
        self.held += entry[3]
        if entry[2] is not None:
            if entry[2] not in self._by_probe:
                self._by_probe[entry[2]] = deque()
                self.held += PROBE_COST
            self._by_probe[entry[2]].append(entry)
        while self._records and (len(self._records) > self.keep or self.held > self.memory):
            self._forget(self._records.popleft())

    def _forget(self, oldest: Entry) -> None:
        """Drop the oldest record, just out of memory, from its probe's index and the counts too."""
        self.dropped += 1
        self.held -= oldest[3]
        if oldest[2] is not None:
            kept = self._by_probe[oldest[2]]
            kept.popleft()
            if not kept:
                del self._by_probe[oldest[2]]
                self.held -= PROBE_COST

    def close(self) -> None:
        """Close the file; records written after this are kept in memory only."""
        if self._file is not None:
            self._file.close()


SIZE_UNITS = {"": 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
"""The units a size is written in: bytes, or binary multiples as `ls -h` and Kubernetes write them."""


def parse_size(text: str) -> int:
    """`"64MiB"` -> 67108864; a whole number of bytes, KiB, MiB or GiB, above 0. ValueError otherwise."""
    number = text.rstrip("KMGiB")
    unit = text[len(number):]
    if not number.isdigit() or unit not in SIZE_UNITS or int(number) == 0:
        raise ValueError(f"{text!r} is not a size above 0: write bytes or e.g. 512KiB, 64MiB, 1GiB")
    return int(number) * SIZE_UNITS[unit]


def capped(value: Any, limit: int = FIELD_LIMIT) -> Any:
    """`value` with every string in it at most `limit` characters (a dict's fields: their LIMITS
    entry), followed by a marker saying how many were cut. The same value always caps the same way."""
    if isinstance(value, str):
        return value if len(value) <= limit else f"{value[:limit]}...[{len(value) - limit} chars cut]"
    if isinstance(value, dict):
        return {key: capped(item, LIMITS.get(key, FIELD_LIMIT)) for key, item in value.items()}
    if isinstance(value, list):
        return [capped(item) for item in value]
    return value


def _weighed(kind: type[Record], values: Packed) -> tuple[int, bool]:
    """The bytes a record packed as `values` is counted for in memory, and whether a string of it
    from the peer is over its limit (FIELD_LIMIT; the body's own).

    Strategy: a record's own strings from the peer (target, body, error, peer) are counted whole,
    the rest (scenario names, endings, methods) are shared by every record that has them; floats are
    counted by their fields (a None among them counted too: an estimate from above)."""
    size = ENTRY_COST + SLOT * len(values) + FLOAT_COST * FLOATS[kind]
    over = False
    for at, limit, counted in PEERS[kind]:
        value = values[at]
        if value is not None:
            size += sys.getsizeof(value) if counted else 0
            over = over or len(value) > limit
    if kind in PLANNED_KINDS:
        size += (len(values) - PACKED_ACTIONS[kind]) // 3 * FLOAT_COST
    return size, over


def _wanted(kind: str | None, probe_id: str | None, probe: str | None, type: str | None) -> bool:
    return (probe is None or probe_id == probe) and (type is None or kind == type)


def _ordinal(entry: Entry) -> int:
    return entry[0]


@dataclass(frozen=True)
class Page:
    """Part of the journal, from `Journal.page`: to read on, ask again with `since=next`.

    Invariant: paging with `since=next` until `more` is false yields every record still in memory
    exactly once, in the order written."""

    texts: list[str]
    """The records' JSON texts, in the order written."""
    ordinals: list[int]
    """Each text's ordinal."""
    next: int
    """The cursor for the next page: the last ordinal returned, or, on the last page, the newest written."""
    more: bool
    """Whether records after `next` were left out for the limit."""
    skipped: int
    """Records after `since` that left memory before this read (of any probe and type: an upper bound when filtered)."""
    running: list[dict[str, Any]]
    """The JSON of the records still in progress as they are so far, capped and marked `"running":
    true` (on the last page only, within its limit and budget)."""
