"""The admin API under hostile calls: nothing takes the process down, no web page drives it, the
journal comes in pages that block nothing, nothing waits without end, and the fd limit is met quietly."""

import json
import resource
import select
import socket
import subprocess

import pytest
import trio
import trio.testing

from chaos_upstream.model.durations import Timing
from chaos_upstream.server.admin import MAX_CONNECTIONS, Admin
from chaos_upstream.server.admin_http import REQUEST_DEADLINE, SEND_TIMEOUT
from chaos_upstream.server.control import Local
from chaos_upstream.server.fleet import Fleet
from chaos_upstream.server.journal import Journal
from chaos_upstream.server.upstream import Settings
from chaos_upstream.verifier.capture import capture
from chaos_upstream.verifier.classify import classify

from conftest import CATALOGUE, T, get, request_record
from test_admin import call_json, response
from test_cli import COMMAND, ROOT, Server, fetch
from test_workers import children


@pytest.fixture
async def served(nursery):
    """(fleet, start): a fleet of one member, and start(**admin options) -> the address of its Admin."""
    fleet = Fleet(CATALOGUE, [Settings(port=0, timing=Timing(T))], Journal())
    await nursery.start(fleet.run)

    async def start(**options):
        [address] = await nursery.start(Admin(Local(fleet, "healthy", Timing(T)), **options).run, "127.0.0.1", 0)
        return address

    return fleet, start


async def still_serving(fleet, address) -> None:
    assert classify(await capture(*fleet.addresses[0], get(extra="Connection: close\r\n"), limit=T)).status == 200
    assert await call_json(address, "GET", "/healthz") == (200, {"status": "ok"})


DEEP = b'{"scenario": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("PUT", "/active", b'{"scenario": []}', 422),
        ("PUT", "/active", b'{"scenario": {}}', 422),
        ("PUT", "/active", DEEP[:60_000], 400),
        ("PUT", "/active", b'{"scenario": "healthy", "member": "0"}', 422),
        ("PUT", "/active", b'{"scenario": "healthy", "member": 0.5}', 422),
        ("PUT", "/active", b'{"scenario": "healthy", "member": true}', 422),
        ("PUT", "/active", b'{"scenario": "healthy", "member": -1}', 422),
        ("PUT", "/active", b'{"scenario": "healthy", "extra": 1}', 422),
        ("PUT", "/active", b"[1, 2]", 422),
        ("PUT", "/active", b"\xff\xfe", 400),
        ("POST", "/timeline", b'{"scenario": ["rolling-deploy"]}', 422),
        ("POST", "/timeline", b'{"scenario": "rolling-deploy", "member": "x"}', 422),
        ("PUT", "/active", b'{"scenario": "' + b"a" * 70_000 + b'"}', 413),
    ],
    ids=["list", "dict", "deep", "member-str", "member-float", "member-bool", "member-negative", "extra", "not-object",
         "not-utf8", "timeline-list", "timeline-extra", "too-big"],
)
async def test_a_hostile_body_gets_a_json_error_and_both_ports_keep_serving(served, method, path, body, status):
    fleet, start = served
    address = await start()
    code, reply = await call_json(address, method, path, body)
    assert code == status and isinstance(reply["error"], str)
    assert fleet.members[0].active is None
    await still_serving(fleet, address)


async def test_a_model_problem_lists_what_pydantic_found(served):
    _, start = served
    code, reply = await call_json(await start(), "PUT", "/active", b'{"scenario": "healthy", "member": "one"}')
    assert code == 422 and [problem["loc"] for problem in reply["problems"]] == [["member"]]


async def test_an_exception_inside_a_call_is_a_500_and_one_line_on_stderr(served, capsys, monkeypatch):
    fleet, start = served
    address = await start()

    async def broken(self):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(Local, "stats", broken)
    code, reply = await call_json(address, "GET", "/metrics")
    monkeypatch.undo()
    assert code == 500 and "RuntimeError" in reply["error"]
    assert capsys.readouterr().err.splitlines() == ["chaos-upstream: admin GET /metrics: RuntimeError: boom second line"]
    await still_serving(fleet, address)


@pytest.mark.parametrize("kind", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
async def test_a_state_change_without_a_json_content_type_is_refused_415(served, kind):
    fleet, start = served
    address = await start()
    extra = f"Content-Type: {kind}\r\n" if kind else ""
    for method, path, body in [("PUT", "/active", b'{"scenario": "upstream-502"}'),
                               ("POST", "/timeline", b'{"scenario": "rolling-deploy"}')]:
        code, reply = await call_json(address, method, path, body, extra=extra)
        assert code == 415 and "application/json" in reply["error"]
    assert fleet.members[0].active is None and not fleet.playing
    code, _ = await call_json(address, "PUT", "/active", b'{"scenario": "upstream-502"}', extra="Content-Type: Application/JSON; charset=utf-8\r\n")
    assert code == 200


async def raw(address, head: str) -> tuple[int, dict, bytes]:
    seen = await capture(*address, head.encode() + b"Connection: close\r\n\r\n", limit=2.0)
    return response(seen.data)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "0.0.0.0", "[::]:80", ""])
@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/journal", "/scenarios"])
async def test_a_host_that_does_not_name_the_api_is_refused_403_on_every_call(served, host, path):
    _, start = served
    address = await start()
    status, _, body = await raw(address, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n")
    assert status == 403 and "--admin-allow-host" in json.loads(body)["error"]


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:31337", "127.0.0.1", "127.0.0.1:9", "[::1]", "[::1]:8001", "chaos.internal",
                                  "chaos.internal:443", "other.internal:81"])
async def test_loopback_names_the_bound_address_and_allowed_names_are_accepted(served, host):
    _, start = served
    address = await start(allow_hosts=["chaos.internal", "other.internal:81"])
    assert (await raw(address, f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n"))[0] == 200
    assert (await raw(address, "GET /healthz HTTP/1.1\r\nHost: other.internal:82\r\n"))[0] == 403


async def test_the_bound_address_is_a_valid_host(nursery):
    fleet = Fleet(CATALOGUE, [Settings(port=0, timing=Timing(T))], Journal())
    await nursery.start(fleet.run)
    [address] = await nursery.start(Admin(Local(fleet, "healthy", Timing(T))).run, "127.0.0.2", 0)
    assert (await raw(address, f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.2:{address[1]}\r\n"))[0] == 200
    assert (await raw(address, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.3\r\n"))[0] == 403


@pytest.mark.parametrize(("origin", "status"), [("null", 403), ("http://evil.example", 403), ("https://localhost.evil.example", 403),
                                                ("http://[", 403), ("http://localhost:3000", 200), ("http://chaos.internal", 200)])
async def test_a_foreign_origin_is_refused_403(served, origin, status):
    fleet, start = served
    address = await start(allow_hosts=["chaos.internal"])
    code, _, _ = await raw(address, f"GET /healthz HTTP/1.1\r\nHost: localhost\r\nOrigin: {origin}\r\n")
    assert code == status
    body = b'{"scenario": "upstream-502"}'
    head = (f"PUT /active HTTP/1.1\r\nHost: localhost\r\nOrigin: {origin}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    seen = await capture(*address, head.encode() + body, limit=2.0)
    assert response(seen.data)[0] == status
    assert (fleet.members[0].active is None) == (status == 403)


def fill(journal: Journal, count: int, start: int = 0) -> None:
    """`count` request records straight into the journal, numbered from `start` in "conn"."""
    for i in range(start, start + count):
        journal.write(request_record(i, "/" + "x" * 300, t=i / 1000, response=None, actions=()))


async def page(address, query: str) -> tuple[list[dict], dict]:
    head = f"GET /journal?{query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    seen = await capture(*address, head.encode(), limit=5.0)
    status, headers, body = response(seen.data)
    assert status == 200, body
    return json.loads(body), headers


async def test_100k_records_page_completely_and_exactly(served):
    fleet, start = served
    address = await start()
    fleet.journal.memory = 128 * 1024 * 1024  # 100,000 records with 300-character targets take ~80 MB
    fill(fleet.journal, 100_000)
    seen, query, pages = [], "limit=10000", 0
    while True:
        records, headers = await page(address, query)
        seen += [record["conn"] for record in records]
        pages += 1
        if pages == 5:  # records written between pages come on later pages
            fill(fleet.journal, 7, start=100_000)
        if b"link" not in headers:
            break
        link = headers[b"link"].decode()
        assert link.endswith('>; rel="next"') and headers[b"x-chaos-journal-skipped"] == b"0"
        query = link[len("</journal?") : -len('>; rel="next"')]
    assert seen == list(range(100_007)) and pages == 11
    assert headers[b"x-chaos-journal-next"] == b"100007"
    assert (await page(address, "since=100007"))[0] == []


async def test_a_page_says_how_many_records_left_memory_unread(nursery):
    fleet = Fleet(CATALOGUE, [Settings(port=0, timing=Timing(T))], Journal(keep=100))
    await nursery.start(fleet.run)
    [address] = await nursery.start(Admin(Local(fleet, "healthy", Timing(T))).run, "127.0.0.1", 0)
    fill(fleet.journal, 250)
    records, headers = await page(address, "since=20&limit=10")
    assert [r["conn"] for r in records] == list(range(150, 160))
    assert headers[b"x-chaos-journal-skipped"] == b"130" and headers[b"x-chaos-journal-next"] == b"160"


async def test_the_default_page_is_a_thousand_records_and_running_ones_come_last(served, nursery):
    fleet, start = served
    address = await start()
    fill(fleet.journal, 1500)
    nursery.start_soon(lambda: capture(*fleet.addresses[0], get(scenario="never-respond", probe="hung"), limit=T))
    with trio.fail_after(T):
        while not fleet.journal.records(probe="hung", running=True):
            await trio.sleep(0.005)
    records, headers = await page(address, "running=1")
    assert len(records) == 1000 and not any(r.get("running") for r in records)
    records, headers = await page(address, "running=1&" + headers[b"x-chaos-journal-next"].decode().join(["since=", ""]))
    assert len(records) == 501 and records[-1]["running"] is True and b"link" not in headers


@pytest.mark.parametrize("query", ["limit=0", "limit=10001", "limit=x", "since=-1", "since=x", "since=1,2", "since=",
                                   "probe=a&probe=b", "nope=1", "running=maybe"])
async def test_bad_paging_values_get_400(served, query):
    _, start = served
    address = await start()
    status, reply = await call_json(address, "GET", f"/journal?{query}")
    assert status == 400 and "limit=N" in reply["usage"]


async def test_the_data_port_stays_fast_while_clients_ask_for_big_pages_and_never_read(served):
    fleet, start = served
    address = await start()
    fleet.journal.memory = 128 * 1024 * 1024  # 100,000 records with 300-character targets take ~80 MB
    fill(fleet.journal, 100_000)  # what blocked the data port for 8 s per client before paging
    idle = []
    try:
        for _ in range(4):
            sock = trio.socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await sock.connect(address)
            await sock.send(b"GET /journal?limit=10000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            idle.append(sock)
        await trio.sleep(0)
        for _ in range(5):
            begun = trio.current_time()
            assert classify(await capture(*fleet.addresses[0], get(extra="Connection: close\r\n"), limit=T)).status == 200
            assert trio.current_time() - begun < 0.5
        assert await call_json(address, "GET", "/healthz") == (200, {"status": "ok"})
    finally:
        for sock in idle:
            sock.close()


async def test_a_client_that_never_reads_is_cut_after_the_send_timeout(autojump_clock):
    fleet = Fleet(CATALOGUE, [Settings(port=0, timing=Timing(T))], Journal())
    fill(fleet.journal, 10_000)
    client, server = trio.testing.lockstep_stream_pair()
    begun = trio.current_time()
    with trio.fail_after(10 * SEND_TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(Admin(Local(fleet, "healthy", Timing(T)))._connection, server)
            await client.send_all(b"GET /journal?limit=10000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert trio.current_time() - begun == pytest.approx(SEND_TIMEOUT)


async def test_a_slowloris_is_cut_at_the_request_deadline(autojump_clock):
    fleet = Fleet(CATALOGUE, [Settings(port=0, timing=Timing(T))], Journal())
    client, server = trio.testing.memory_stream_pair()
    begun = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(Admin(Local(fleet, "healthy", Timing(T)))._connection, server)
        with trio.move_on_after(10 * REQUEST_DEADLINE):
            for byte in b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Drip: " + b"x" * 1000:
                try:
                    await client.send_all(bytes([byte]))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                await trio.sleep(1)
        with trio.fail_after(10 * REQUEST_DEADLINE):
            assert await client.receive_some() == b""  # closed by the server, without a reply
    assert trio.current_time() - begun == pytest.approx(REQUEST_DEADLINE, abs=1)


async def test_a_connection_beyond_the_cap_cuts_the_oldest_so_slow_clients_cannot_keep_a_probe_out(served):
    _, start = served
    address = await start()
    held = []
    try:
        for _ in range(MAX_CONNECTIONS):  # slowloris: each has sent part of a head, and waits
            held.append(sock := trio.socket.socket())
            await sock.connect(address)
            await sock.send(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        with trio.fail_after(REQUEST_DEADLINE / 10):
            assert await call_json(address, "GET", "/healthz") == (200, {"status": "ok"})
            assert await held[0].recv(100) == b""  # the oldest was cut, without a reply
        assert not await _closed(held[1])  # the others are still being waited for
    finally:
        for sock in held:
            sock.close()


async def _closed(sock) -> bool:
    """Whether the server has closed `sock` (nothing comes within a moment otherwise)."""
    with trio.move_on_after(0.1):
        return await sock.recv(100) == b""
    return False


def ports(process: subprocess.Popen, *seen: str) -> tuple[int, int]:
    """(data port, admin port) from the `listening on` and `admin API on` lines `serve` prints."""
    lines = list(seen)
    while not any("admin API on" in line for line in lines):
        lines.append(process.stdout.readline())
        assert lines[-1], "serve ended before it listened"
    [data] = [line for line in lines if "listening on" in line]
    [admin] = [line for line in lines if "admin API on" in line]
    return int(data.rsplit(":", 1)[1]), int(admin.rsplit(":", 1)[1])


FD_LIMIT = 64
"""RLIMIT_NOFILE of the served process in the fd-exhaustion test: room to start, few to fill."""


def test_at_the_fd_limit_the_admin_backs_off_quietly_and_answers_again():
    process = subprocess.Popen(
        [*COMMAND, "serve", "--port", "0", "--admin-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=ROOT, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT)),
    )
    held: list[socket.socket] = []
    try:
        data_port, admin_port = ports(process)
        while len(held) < FD_LIMIT:  # each answered connection holds one of the server's fds
            sock = socket.create_connection(("127.0.0.1", data_port))
            held.append(sock)
            sock.settimeout(0.3)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            try:
                if not sock.recv(65536):
                    break
            except TimeoutError:
                break  # not accepted: the server is out of fds
        waiting = [socket.create_connection(("127.0.0.1", admin_port)) for _ in range(3)]
        held += waiting
        for sock in waiting:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert select.select(waiting, [], [], 0.3)[0] == []  # not accepted while the fds are out
        for sock in held[: len(held) - 3]:
            sock.close()
        for sock in waiting:
            sock.settimeout(5)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in held:
            sock.close()
        process.terminate()
        process.wait(timeout=10)
        stderr = process.stderr.read()
        process.stdout.close(), process.stderr.close()
    assert "Traceback" not in stderr and "EMFILE" not in stderr and "Too many open files" not in stderr, stderr[:2000]


def test_a_hostile_put_leaves_the_supervisor_and_workers_alive():
    server = Server("--workers", "2", "--admin-port", "0")
    try:
        _, admin_port = ports(server.process, server.line)
        workers = children(server.process.pid)
        assert len(workers) == 2
        for body in [b'{"scenario": []}', b'{"scenario": {}}', DEEP, b'{"scenario": "healthy", "member": "0"}']:
            head = (f"PUT /active HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n")
            assert fetch(admin_port, head.encode() + body).split(b" ", 2)[1] in (b"400", b"413", b"422")
        assert server.process.poll() is None and children(server.process.pid) == workers
        close = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        assert all(fetch(server.port, close).startswith(b"HTTP/1.1 200 OK") for _ in range(8))
        assert fetch(admin_port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200 ")
    finally:
        assert server.stop() == 0


def test_the_journal_of_workers_pages_without_loss_or_repeat():
    server = Server("--workers", "2", "--admin-port", "0")
    try:
        _, admin_port = ports(server.process, server.line)
        close = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        for _ in range(30):
            fetch(server.port, close)
        seen, query = [], "type=request&limit=7"
        for _ in range(20):
            reply = fetch(admin_port, f"GET /journal?{query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            status, headers, body = response(reply)
            seen += [(record["worker"], record["conn"]) for record in json.loads(body)]
            if b"link" not in headers:
                break
            query = headers[b"link"].decode()[len("</journal?") : -len('>; rel="next"')]
        assert len(seen) == len(set(seen)) == 30 and {worker for worker, _ in seen} == {0, 1}
        assert len(headers[b"x-chaos-journal-next"].split(b",")) == 2
    finally:
        assert server.stop() == 0
