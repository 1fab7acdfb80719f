"""The journal in memory: a probe's records found through its index, and forgotten with the oldest;
memory bounded in bytes, every field capped, and /metrics saying what left."""

import gc
import json
import tracemalloc

import pytest
import trio

from chaos_upstream.model.durations import Timing
from chaos_upstream.plan.actions import Response
from chaos_upstream.records import (
    AcceptRecord, ActionRecord, BadRequestRecord, ChangeRecord, ConnectionRecord, encode, parse, to_json,
)
from chaos_upstream.server.admin import Admin
from chaos_upstream.server.control import Local
from chaos_upstream.server.fleet import Fleet
from chaos_upstream.server.journal import FIELD_LIMIT, Journal, capped, parse_size
from chaos_upstream.server.upstream import Settings
from chaos_upstream.verifier.capture import capture

from conftest import CATALOGUE, T, request_record
from test_admin import call


def test_a_probes_records_are_the_ones_still_in_memory_in_order():
    journal = Journal(keep=3)
    for n, probe in enumerate(["a", "b", "a", None, "a"]):
        journal.write(request_record(n, probe=probe))
    assert [r.conn for r in journal.records(probe="a")] == [2, 4]
    assert journal.records(probe="b") == []
    assert [r.conn for r in journal.records()] == [2, 3, 4] and journal.total == 5


def test_records_come_back_as_the_typed_records_written_and_their_json_is_the_files(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    written = [
        request_record(0, probe="p", continue_="sent", body="abc"),
        ConnectionRecord(t=1.0, conn=0, worker=2, peer="127.0.0.1:5", ended="peer-closed", requests=1, t_end=2.0, bytes_in=9, bytes_out=80),
        BadRequestRecord(t=1.0, conn=1, error="bad", status=400),
        request_record(3, scenario=None, rule=None, response=None, actions=(), ended="closed", duration=None, error="no scenario", status=404),
        ChangeRecord(t=2.0, member=1, do="stop", in_flight="finish"),
        AcceptRecord(t=3.0, conn=2, scenario="accept-then-close", rule=None, response=Response(), ended="closed", duration=0.0),
    ]
    for record in written:
        journal.write(record)
    journal.close()
    assert journal.records() == written
    lines = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert [parse(line) for line in lines] == written and [to_json(record) for record in written] == lines
    assert lines[0]["continue"] == "sent" and "worker" not in lines[0] and lines[1]["worker"] == 2
    assert "scenario" not in lines[4] and lines[4]["in_flight"] == "finish"
    assert (lines[3]["scenario"], lines[3]["rule"], lines[3]["status"]) == (None, None, 404) and "response" not in lines[3]


@pytest.mark.parametrize("record", [
    request_record(0, '/"quoted"\\back\nline\u00e9\u2603\x00', probe="p\t1", t=12.345678, duration=1e-06, body="\x7f\xff"),
    request_record(1, rule=3, response=Response(content_length=None, chunked=True), actions=(), running=True, ended=None),
    ConnectionRecord(t=0.1, conn=7, peer=None, ended="peer-reset", requests=0, t_end=1e20, bytes_in=0, bytes_out=10**12),
    AcceptRecord(t=3.0, conn=2, member=0, scenario="accept-then-hang", rule=None, actions=(ActionRecord("hang", 3.5),)),
])
def test_a_records_text_is_what_json_itself_writes_and_reads_back_as_the_record(record):
    text = encode(record)
    assert text == json.dumps(json.loads(text), separators=(",", ":")) and text.isascii()
    assert parse(json.loads(text)) == record


@pytest.mark.parametrize("data, problem", [
    ({"type": "requests", "t": 1}, "type 'requests' is none of request, accept"),
    ({**to_json(request_record(0)), "scenaro": "healthy"}, "not a request record: unknown fields scenaro"),
    ({"type": "connection", "t": 1, "conn": 1}, "not a connection record: .*missing"),
    ({**to_json(request_record(0)), "actions": [{"do": "send", "at": 1}]}, "not a request record: .*at"),
])
def test_parse_refuses_what_is_not_a_record_naming_what_is_wrong(data, problem):
    with pytest.raises(ValueError, match=problem):
        parse(data)


def test_running_records_of_a_probe_come_after_the_written_ones():
    journal = Journal()
    journal.write(request_record(0, probe="a"))
    journal.begin("key", lambda: request_record(1, probe="a", ended=None, running=True))
    assert [(r.conn, r.running) for r in journal.records(probe="a", running=True)] == [(0, False), (1, True)]
    assert [r.conn for r in journal.records(probe="a")] == [0]
    journal.write(request_record(1, probe="a"), key="key")
    assert [(r.conn, r.running) for r in journal.records(probe="a", running=True)] == [(0, False), (1, False)]


def test_memory_is_bounded_in_bytes_and_the_oldest_records_leave_first():
    journal = Journal(memory=100_000)
    for n in range(300):
        journal.write(request_record(n, "/" + "x" * 1500, probe=f"p-{n}"))
        assert journal.held <= 100_000
    kept = journal.records()
    assert 20 < len(kept) < 100 and [r.conn for r in kept] == list(range(300 - len(kept), 300))
    assert journal.dropped == 300 - len(kept) and journal.total == 300
    assert journal.records(probe="p-0") == [] and journal.records(probe="p-299")[0].conn == 299


def test_the_bytes_held_are_what_the_records_in_memory_really_take():
    """The estimate within 10% of what tracemalloc sees, with a probe id per record, one for all, and none."""
    for probe in (lambda n: f"probe-{n}", lambda n: "one", lambda n: None):
        journal = Journal()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for n in range(1500):
                journal.write(request_record(n, f"/item/{n}?q=" + "a" * (n % 300), probe(n)))
            gc.collect()
            taken = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert 0.9 < taken / journal.held < 1.1, (probe(1), taken, journal.held)


def test_records_in_memory_add_nothing_to_what_the_garbage_collector_walks():
    """Packed records are tuples of plain values: once a collection has seen them, untracked."""
    journal = Journal()
    gc.collect()
    tracked = len(gc.get_objects())
    for n in range(2000):
        journal.write(request_record(n, f"/item/{n}", probe="p" if n % 2 else None))
    gc.collect()
    assert len(gc.get_objects()) - tracked < 20
    assert journal.records(probe="p")[-1].actions[0] == ActionRecord("send", 2000.5, 80)


def test_a_record_never_keeps_a_field_over_the_limit_and_says_how_much_was_cut(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    journal.write(request_record(0, "/" + "t" * 60_000, probe="p" * 5000, error="e" * 3000, body="b" * 65_536))
    journal.close()
    [kept] = journal.records()
    assert to_json(kept) == json.loads((tmp_path / "journal.jsonl").read_text())
    assert kept.target == "/" + "t" * (FIELD_LIMIT - 1) + f"...[{60_001 - FIELD_LIMIT} chars cut]"
    assert kept.error == "e" * FIELD_LIMIT + f"...[{3000 - FIELD_LIMIT} chars cut]"
    assert kept.body == "b" * 65_536  # a recorded body keeps the 64 KiB the model promises
    assert journal.records(probe="p" * 5000) == [kept] and kept.probe == capped("p" * 5000)  # found by the id sent


def test_sizes_are_bytes_or_binary_multiples():
    assert [parse_size(text) for text in ("4096", "512KiB", "64MiB", "1GiB", "9B")] == [4096, 512 << 10, 64 << 20, 1 << 30, 9]
    for text in ("0", "64MB", "1.5MiB", "MiB", "-1", "64 MiB", "2KiBB"):
        with pytest.raises(ValueError, match="not a size"):
            parse_size(text)


async def test_sixty_kilobyte_targets_through_the_server_stay_within_the_memory_and_metrics_say_what_left(nursery):
    journal = Journal(memory=256 * 1024)
    fleet = Fleet(CATALOGUE, [Settings(port=0, timing=Timing(T))], journal)
    await nursery.start(fleet.run)
    [admin] = await nursery.start(Admin(Local(fleet, "healthy", Timing(T))).run, "127.0.0.1", 0)
    for n in range(150):
        head = f"GET /{n}/{'x' * 60_000} HTTP/1.1\r\nHost: a\r\n\r\n".encode()
        await capture(*fleet.addresses[0], head, limit=2.0, done=lambda piece: True)
    with trio.fail_after(2.0):
        while journal.total < 300:  # a request record and a connection record each
            await trio.sleep(0.005)
    assert journal.held <= 256 * 1024 and journal.dropped == 300 - len(journal.records()) > 100
    assert all(len(getattr(r, "target", "")) < FIELD_LIMIT + 30 for r in journal.records())
    status, text = await call(admin, "GET", "/metrics")
    assert f"chaos_upstream_journal_dropped_total {journal.dropped}.0".encode() in text
    assert f"chaos_upstream_journal_memory_bytes {journal.held}.0".encode() in text
    assert b"chaos_upstream_journal_unwritten_total 0.0" in text
