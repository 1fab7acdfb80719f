"""What `Journal.write` costs the thread that calls it (serve's event loop), with the journal file
written on that thread, as before, and by JournalFile's writer thread.

What it measures: N typical request records (~450 bytes of JSON each, as the healthy path journals
them) given to `Journal.write`, timed with `time.perf_counter` around the loop of calls, in three
journals: one without a file (the memory part alone, for scale); one whose file is `Synchronous`,
this script's copy of the old path (each line `os.write` on an O_APPEND descriptor under `flock`, in
the caller); one with its JournalFile (the line queued; the writer thread writes). The two files'
`write` are also timed alone, on the same lines encoded beforehand, since encoding the record is
most of what Journal.write costs and the same either way (this JournalFile's queue unbounded: a loop
queueing a line in ~0.3 us outruns any disk, and the default bound would refuse lines past 8 MiB, as
it is there to). For the JournalFile of Journal.write, the
close() that waits for the thread to write what is still queued is timed apart: it is not the
loop's time per record, but what a SIGTERM waits for at the end. Each round writes fresh files in a
temporary folder, the three journals in turn (alternating which file goes first); figures are
medians over the rounds.

How to run it, from the repository root:

    .venv/bin/python benchmarks/journal_write.py                  # 20,000 records, 5 rounds
    .venv/bin/python benchmarks/journal_write.py --records 100000 --rounds 3
"""

from __future__ import annotations

import argparse
import fcntl
import os
import statistics
import tempfile
import time
from pathlib import Path

from chaos_upstream.plan.actions import Response
from chaos_upstream.records import ActionRecord, RequestRecord, to_json
from chaos_upstream.server.journal import ENCODE, Journal
from chaos_upstream.server.journal_file import JournalFile


class Synchronous:
    """The file as it was written before the writer thread: each line in the caller, under flock."""

    unwritten = 0

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def write(self, line: bytes) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            os.write(self.fd, line)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.fd)


def record(n: int) -> RequestRecord:
    """A healthy request's record, as the server journals it (its numbers vary with `n`)."""
    t = 1000.0 + n * 0.0021
    return RequestRecord(
        t=t, conn=n // 3, seq=n % 3 + 1, method="GET", target=f"/api/items/{n}?page=2&sort=name", scenario="healthy",
        chosen_by="default", probe=f"probe-{n // 50:06d}", rule=None,
        response=Response(status=200, content_length=13, head_complete=True, body_bytes=13),
        actions=(ActionRecord("send", t + 0.0001, 120), ActionRecord("keep-alive", t + 0.0002)),
        ended="keep-alive", duration=0.0002,
    )


def timed(writer: Journal | Synchronous | JournalFile, items: list[RequestRecord] | list[bytes]) -> tuple[float, float]:
    """Seconds in the loop of `writer.write` over `items` (records for a Journal, lines encoded
    beforehand for a file alone), and seconds in its close()."""
    started = time.perf_counter()
    for item in items:
        writer.write(item)  # type: ignore[arg-type]
    written = time.perf_counter()
    writer.close()
    return written - started, time.perf_counter() - written


def round_(
    records: list[RequestRecord], lines: list[bytes], folder: Path, thread_first: bool,
) -> dict[str, tuple[float, float]]:
    figures = {"no file": timed(Journal(), records)}
    figures["synchronous, file.write alone"] = timed(Synchronous(folder / "alone"), lines)
    (folder / "alone").unlink()
    figures["thread, file.write alone"] = timed(JournalFile(folder / "alone", queue_bytes=2**40), lines)
    assert len((folder / "alone").read_bytes().splitlines()) == len(lines), "records lost"
    (folder / "alone").unlink()
    for kind in ("thread", "synchronous") if thread_first else ("synchronous", "thread"):
        path = folder / f"{kind}.jsonl"
        if kind == "thread":
            journal = Journal(path)
        else:
            journal = Journal()
            journal._file = Synchronous(path)  # type: ignore[assignment]  # the old write path, in place of JournalFile
        figures[kind] = timed(journal, records)
        assert len(path.read_bytes().splitlines()) == len(records), f"{kind}: records lost"
        path.unlink()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    records = [record(n) for n in range(args.records)]
    lines = [ENCODE(to_json(one)).encode() + b"\n" for one in records]
    size = statistics.mean(map(len, lines))
    rounds = []
    with tempfile.TemporaryDirectory() as folder:
        for index in range(args.rounds):
            rounds.append(round_(records, lines, Path(folder), thread_first=index % 2 == 1))
    per_record = {kind: statistics.median(r[kind][0] for r in rounds) / args.records * 1e6 for kind in rounds[0]}
    close_ms = statistics.median(r["thread"][1] for r in rounds) * 1e3
    print(f"{args.records} request records of {size:.0f} bytes, median of {args.rounds} rounds; "
          "us per Journal.write on the calling thread:")
    for kind, micros in per_record.items():
        print(f"  {kind:30} {micros:6.2f} us")
    print(f"  synchronous / thread: {per_record['synchronous'] / per_record['thread']:.2f}x; "
          f"file part (minus no file): {per_record['synchronous'] - per_record['no file']:.2f} us -> "
          f"{per_record['thread'] - per_record['no file']:.2f} us; file.write alone: "
          f"{per_record['synchronous, file.write alone'] / per_record['thread, file.write alone']:.2f}x")
    print(f"  thread's close() after the loop (draining what was still queued): {close_ms:.1f} ms")


if __name__ == "__main__":
    main()
