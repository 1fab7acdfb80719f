"""Properties of the admin API over thousands of generated calls: every call gets a reply with a known
status and a JSON body, never an exception; only an allowed Host, Origin, token and content type
change state; the journal pages completely and exactly; raw garbage on the socket harms nothing."""

import json
import queue
import socket
import threading

import h11
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaos_upstream.model.durations import Timing
from chaos_upstream.records import ConnectionRecord
from chaos_upstream.server.admin import Admin
from chaos_upstream.server.admin_http import MAX_BODY, Reply
from chaos_upstream.server.control import JournalPage, Local
from chaos_upstream.server.fleet import Fleet
from chaos_upstream.server.journal import Journal
from chaos_upstream.server.upstream import Settings
from chaos_upstream.server.workers import _merged

from conftest import CATALOGUE, T, request_record

TOKEN = "s3cret"
KNOWN = {200, 202, 400, 401, 403, 404, 405, 409, 413, 415, 422, 503}
"""Every status the admin API answers with on purpose (500 is a bug of ours: never expected here)."""

ALLOWED_HOSTS = ["localhost", "127.0.0.1:9", "[::1]", "LocalHost:1", "chaos.internal"]
FOREIGN_HOSTS = ["evil.example", "evil.example:80", "0.0.0.0", "127.0.0.1.nip.io", "[::]", "", "localhost.evil"]

PATHS = st.sampled_from(["/healthz", "/readyz", "/metrics", "/active", "/timeline", "/journal", "/", "/journal/", "/%61ctive"])
"""Every call but /scenarios, whose answer depends on nothing a request carries (and takes 5 ms: test_admin has it)."""
QUERY_PAIRS = [f"{key}={value}" for key in ["since", "limit", "probe", "type", "running", "nope", ""]
               for value in ["", "0", "1", "7", "10000", "10001", "-1", "true", "maybe", "0,0", "1,2,3", "x", "1e3",
                             "%00", "%ff", "p1", "request", "99999999999999999999999"]]
QUERY = st.lists(st.sampled_from(QUERY_PAIRS), max_size=3).map("&".join)

JSON_VALUES = [None, True, 0, -1, 1.5, 10**30, "", "healthy", "upstream-502", "rolling-deploy", "nope", "Healthy", "x" * 70,
               [], {}, ["healthy"], {"scenario": "healthy"}, [[[]]]]
CALLS = [{"scenario": name} for name in JSON_VALUES] + [{"scenario": "healthy", "member": m} for m in JSON_VALUES + [0, 1, 2]] + [
    {"scenario": "upstream-502", "member": 1}, {"scenario": "healthy", "extra": 1}, {"member": 0}, {}, [], "healthy", None]
"""JSON bodies: right ones, and each way of being wrong that the models know of."""
BODIES = st.one_of(
    st.sampled_from([json.dumps(call).encode() for call in CALLS]),
    st.binary(max_size=32),
    st.integers(1, 40_000).map(lambda depth: b'{"scenario": ' + b"[" * depth + b"]" * depth + b"}"),
    st.integers(1, 40_000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    st.sampled_from([b"x" * (MAX_BODY + 1), b"", b'{"scenario": "healthy"', b'{"scenario": "\\ud800"}', b"\xef\xbb\xbf{}"]),
)
CONTENT_TYPES = st.sampled_from([None, "application/json", "application/json; charset=utf-8", "APPLICATION/JSON",
                                 "text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "json"])
ORIGINS = st.sampled_from([None, "null", "http://localhost:3000", "http://evil.example", "https://chaos.internal",
                           "http://[", "file://", "http://127.0.0.1"])
METHODS = st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", "OPTIONS", "get", "PURGE", "X"])
HOSTS = st.sampled_from(ALLOWED_HOSTS + FOREIGN_HOSTS)
AUTHORIZATIONS = st.sampled_from([None, f"Bearer {TOKEN}", "Bearer nope", TOKEN])
OPTIONAL = [("Origin", ORIGINS), ("Content-Type", CONTENT_TYPES), ("Authorization", AUTHORIZATIONS)]
BOOLEANS = st.booleans()
"""Strategies are built once, here: building them inside a draw costs hypothesis milliseconds each time."""


@st.composite
def requests(draw):
    """(an h11 Request, its body, what was drawn): methods, targets, headers and bodies, valid or not."""
    method, query = draw(METHODS), draw(QUERY)
    target = draw(PATHS) + (f"?{query}" if query or draw(BOOLEANS) else "")
    host = draw(HOSTS)
    headers = [("Host", host)]  # h11 itself refuses a request with several (a 400 before dispatch)
    drawn = {"method": method, "host": host}
    for name, strategy in OPTIONAL:
        drawn[name] = draw(strategy)
        if drawn[name] is not None:
            headers.append((name, drawn[name]))
    return h11.Request(method=method, target=target, headers=headers), draw(BODIES), drawn


def fleet_of_two() -> Fleet:
    journal = Journal()
    for i in range(30):
        journal.write(request_record(i, probe=f"p{i % 4}", t=i / 10) if i % 3 else ConnectionRecord(
            t=i / 10, conn=i, ended="peer-closed", t_end=i / 10, bytes_in=0, bytes_out=0))
    return Fleet(CATALOGUE, [Settings(port=0, timing=Timing(T))] * 2, journal)


def read(reply: Reply) -> bytes:
    return reply.body if reply.chunks is None else b"".join(reply.chunks)


FLEET = fleet_of_two()
ADMINS = {token: Admin(Local(FLEET, "healthy", Timing(T)), token, allow_hosts=["chaos.internal"]) for token in (None, TOKEN)}


CALLS_PER_EXAMPLE = st.lists(requests(), min_size=1, max_size=6)
"""Several calls per example, one after another on the same API: hypothesis's own cost per example
(a millisecond or two) would otherwise be most of the run."""


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                    HealthCheck.function_scoped_fixture])
@given(CALLS_PER_EXAMPLE, st.sampled_from([None, TOKEN]))
def test_every_call_gets_a_known_status_and_a_json_body_and_only_a_proper_one_changes_state(live, calls, token):
    for request, body, drawn in calls:
        check_one_call(ADMINS[token], live[2], request, body, drawn)


def check_one_call(admin, trio_token, request, body, drawn):
    before = [member.active for member in FLEET.members], admin.control.active
    reply = trio.from_thread.run(admin.dispatch, request, body, trio_token=trio_token)
    assert isinstance(reply, Reply) and reply.status in KNOWN
    content = read(reply)
    if reply.content_type == "application/json":
        value = json.loads(content)
        assert reply.status < 400 or isinstance(value.get("error"), str) or (reply.status, value.get("ready")) == (503, False)
    else:
        assert reply.status == 200 and request.target.split(b"?")[0] == b"/metrics"
    host_ok = drawn["host"] in ALLOWED_HOSTS
    origin_ok = drawn["Origin"] in (None, "http://localhost:3000", "https://chaos.internal", "http://127.0.0.1")
    if not (host_ok and origin_ok):
        assert reply.status == 403
    elif admin.token is not None and drawn["Authorization"] != f"Bearer {TOKEN}":
        assert reply.status == 401
    after = [member.active for member in FLEET.members], admin.control.active
    if after != before:
        assert reply.status == 200 and host_ok and origin_ok and (drawn["method"] == "DELETE" or "json" in drawn["Content-Type"].lower())
    if reply.status in (200, 202) and drawn["method"] in ("PUT", "POST"):
        assert drawn["Content-Type"].split(";")[0].lower() == "application/json"


def pages_of(journals: list[Journal], limit: int, writes: list[int]) -> list[str]:
    """Every text served when paging through `journals` (one per worker) `limit` at a time, while
    writes[k] more records are written to each journal after page k."""
    served, cursor = [], [0] * len(journals)
    for page_number in range(10_000):
        pages = []
        for journal, since in zip(journals, cursor):
            page = journal.page(since=since, limit=limit)
            pages.append({"texts": page.texts, "ordinals": page.ordinals, "next": page.next, "more": page.more,
                          "skipped": page.skipped, "running": page.running})
        merged: JournalPage = _merged(pages, cursor, limit)
        assert len(merged.texts) <= limit
        served += merged.texts
        cursor = list(merged.next)
        more_writes = writes[page_number] if page_number < len(writes) else 0
        for worker, journal in enumerate(journals):
            write(journal, worker, more_writes)
        if not merged.more and not more_writes:
            return served
    raise AssertionError("paging did not end")


def write(journal: Journal, worker: int, count: int) -> None:
    for _ in range(count):
        journal.write(request_record(journal.total + 1, t=round(journal.total * 0.37 % 5, 3), worker=worker))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=4), st.integers(1, 25), st.lists(st.integers(0, 9), max_size=5))
def test_paging_the_journals_of_any_workers_serves_every_record_exactly_once(sizes, limit, writes):
    journals = [Journal() for _ in sizes]
    for worker, (journal, size) in enumerate(zip(journals, sizes)):
        write(journal, worker, size)
    served = [json.loads(text) for text in pages_of(journals, limit, writes)]
    keys = [(record["worker"], record["conn"]) for record in served]
    assert sorted(keys) == sorted((k, n) for k, journal in enumerate(journals) for n in range(1, journal.total + 1))
    for k in range(len(journals)):  # each worker's records in the order written
        assert [n for worker, n in keys if worker == k] == sorted(n for worker, n in keys if worker == k)


@pytest.fixture(scope="module")
def live():
    """(admin address, fleet, trio token): an Admin on a real socket, served by trio in a thread for
    the module; the token runs calls in that thread's loop (a trio.run per call would cost a ms)."""
    fleet = Fleet(CATALOGUE, [Settings(port=0, timing=Timing(T))], Journal())
    ready: queue.Queue = queue.Queue()

    async def serve():
        async with trio.open_nursery() as nursery:
            await nursery.start(fleet.run)
            [address] = await nursery.start(Admin(Local(fleet, "healthy", Timing(T))).run, "127.0.0.1", 0)
            ready.put((address, trio.lowlevel.current_trio_token(), nursery.cancel_scope))

    thread = threading.Thread(target=trio.run, args=(serve,))
    thread.start()
    address, token, scope = ready.get(timeout=10)
    yield address, fleet, token
    trio.from_thread.run_sync(scope.cancel, trio_token=token)
    thread.join(10)


def exchange(address, data: bytes) -> bytes:
    """What the server sent back to `data` (sent, then our side shut) until it closed."""
    chunks = []
    with socket.create_connection(address, timeout=2) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while piece := sock.recv(65536):
                chunks.append(piece)
        except TimeoutError:
            raise
        except OSError:  # a reply to an oversized body comes, and the connection closes, before the body is all sent
            pass
    return b"".join(chunks)


@st.composite
def mutated(draw):
    """A PUT or POST with a body of BODIES, framed right, then a few bytes changed (or none)."""
    body = draw(BODIES)
    method, path = draw(st.sampled_from([("PUT", "/active"), ("POST", "/timeline")]))
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    data = bytearray(head.encode() + body)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        data[at : at + draw(st.integers(0, 3))] = draw(st.binary(max_size=4))
    return bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=300), mutated()))
def test_raw_bytes_on_the_socket_get_an_http_reply_or_a_close_and_the_api_goes_on(live, data):
    address, _, _ = live
    answer = exchange(address, data)
    if answer:
        assert answer.startswith(b"HTTP/1.1 ") and int(answer[9:12]) in KNOWN, answer[:200]
    health = exchange(address, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert health.startswith(b"HTTP/1.1 200 ")
