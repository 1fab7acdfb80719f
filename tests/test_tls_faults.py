"""The ClientHello parser, the SNI rule, the handshake faults, and the TLS Transport, facts and
endings (chaos_upstream.tls). ClientHellos are real: made by Python's ssl client. The wire tests use
real sockets on 127.0.0.1: the upstream's side in trio, the client (a proxy's side) as a blocking
ssl client in a thread, with short timeouts."""

from __future__ import annotations

import ast
import datetime
import importlib
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from chaos_upstream.tls.contexts import Contexts
from chaos_upstream.tls.facts import TlsFacts, ending_of, facts_of
from chaos_upstream.tls.faults import HANDSHAKE_FAULTS
from chaos_upstream.errors import NotClientHello
from chaos_upstream.tls.handshake import HANDSHAKE_FAILURE_ALERT, ClientHello, client_hello, next_record_end
from chaos_upstream.tls.material import Material, generate
from chaos_upstream.tls.recordstream import RecordStream
from chaos_upstream.tls.sni import scenario_of
from chaos_upstream.tls.transport import TlsTransport

MATERIAL: Material = generate(now=datetime.datetime.now(datetime.timezone.utc))
CLIENT_TIMEOUT = 0.3
LIMIT = 5.0
"""A wire test's bound: far past what it needs, so only a hang reaches it."""


def captured_hello(hostname: str | None) -> bytes:
    """The first bytes Python's ssl client sends for `hostname`."""
    outgoing = ssl.MemoryBIO()
    client = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=hostname)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def refragment(hello: bytes, cut: int) -> bytes:
    """The same ClientHello in two handshake records, the message cut `cut` bytes in."""
    message = hello[5:]
    return b"".join(hello[:3] + len(part).to_bytes(2, "big") + part for part in (message[:cut], message[cut:]))


# -- the pure layer -------------------------------------------------------------------------------

def test_a_whole_client_hello_gives_its_sni_lower_cased() -> None:
    hello = captured_hello("Tls-Wrong-Name.chaos")
    assert client_hello(hello) == ClientHello(sni="tls-wrong-name.chaos", size=len(hello))


def test_a_client_hello_fed_one_byte_at_a_time_is_whole_only_at_its_last() -> None:
    hello = captured_hello("localhost")
    assert all(client_hello(hello[:end]) is None for end in range(len(hello)))
    assert client_hello(hello + b"\x17\x03\x03") == ClientHello(sni="localhost", size=len(hello))  # what follows is not read


@pytest.mark.parametrize("cut", [1, 3, 4, 40, -1])
def test_a_client_hello_over_two_records_is_read_whole(cut: int) -> None:
    hello = captured_hello("localhost")
    split = refragment(hello, cut if cut > 0 else len(hello) - 6)
    assert all(client_hello(split[:end]) is None for end in range(len(split)))
    assert client_hello(split) == ClientHello(sni="localhost", size=len(split))


def test_no_sni_for_an_ip_address_or_no_name() -> None:
    for hostname in ("127.0.0.1", None):
        hello = captured_hello(hostname)
        assert client_hello(hello) == ClientHello(sni=None, size=len(hello))


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n", b"\x16\x02\x00\x00\x01", b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", b"\x16\x03\x01\x00\x00",
    b"\x16\x03\x01\x40\x01",  # a record longer than 2^14: refused at its header
])
def test_what_is_no_client_hello_is_refused(data: bytes) -> None:
    with pytest.raises(NotClientHello):
        client_hello(data)


def test_a_client_hello_cut_inside_its_body_is_refused() -> None:
    hello = captured_hello("localhost")
    body = hello[9:60]  # the message declares only 51 bytes: the extensions' lengths run past it
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    with pytest.raises(NotClientHello):
        client_hello(b"\x16\x03\x01" + len(message).to_bytes(2, "big") + message)


def test_next_record_end() -> None:
    assert next_record_end(b"\x17\x03") == 2
    assert next_record_end(b"\x17\x03\x03\x00\x02abcd") == 7
    assert next_record_end(b"\x17\x03\x03\x00\x09ab") == 7


def test_the_handshake_failure_alert_bytes() -> None:
    assert HANDSHAKE_FAILURE_ALERT == b"\x15\x03\x03\x00\x02\x02\x28"


@pytest.mark.parametrize(("name", "scenario"), [
    ("tls-wrong-name.chaos", "tls-wrong-name"), ("HEALTHY.CHAOS", "healthy"), (".chaos", None),
    ("localhost", None), ("chaos", None), ("x.chaos.example", None), (None, None),
])
def test_the_sni_rule(name: str | None, scenario: str | None) -> None:
    assert scenario_of(name) == scenario


# -- the wire -------------------------------------------------------------------------------------

Serve = Callable[[trio.SSLStream, TlsTransport, str | None], Awaitable[object]]


async def serve_one(listener: trio.SocketListener, serve: Serve | None = None) -> object:
    """Accept one connection and run it as the server will: read the ClientHello, run the
    handshake fault its SNI names, or hand it to an SSLStream and `serve` that."""
    raw = await listener.accept()
    records = RecordStream(raw)
    async with records:
        hello = await records.client_hello()
        scenario = scenario_of(hello.sni if hello else None)
        fault = None if scenario is None else scenario.removeprefix("tls-")  # the catalogue's tls-NAME has `tls: NAME`
        if fault in HANDSHAKE_FAULTS:
            return await HANDSHAKE_FAULTS[fault](records)
        tls = trio.SSLStream(records, Contexts(MATERIAL).for_fault(fault), server_side=True)
        await tls.do_handshake()
        return await serve(tls, TlsTransport(records, tls), hello.sni) if serve else None


async def exchange(client: Callable[[socket.socket], object], serve: Serve | None = None) -> tuple[object, object]:
    """Run `client` (blocking, in a thread, on a connected socket) against `serve_one`: what each returned."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    results: dict[str, object] = {}

    def connect() -> None:
        with socket.create_connection(listener.socket.getsockname(), timeout=CLIENT_TIMEOUT) as sock:
            results["client"] = client(sock)

    async def server() -> None:
        results["server"] = await serve_one(listener, serve)

    with trio.fail_after(LIMIT):
        async with listener, trio.open_nursery() as nursery:
            nursery.start_soon(server)
            await trio.to_thread.run_sync(connect)
    return results["client"], results["server"]


def proxy_context() -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=MATERIAL.ca_pem.decode())
    context.check_hostname = False  # the names NAME.chaos are not on the certificate
    context.set_alpn_protocols(["http/1.1"])
    return context


def failing(hostname: str) -> Callable[[socket.socket], BaseException]:
    """A client whose handshake must fail: what it raised."""
    def client(sock: socket.socket) -> BaseException:
        with pytest.raises(OSError) as failure:
            proxy_context().wrap_socket(sock, server_hostname=hostname)
        return failure.value
    return client


async def test_the_stall_holds_the_handshake_until_the_client_leaves() -> None:
    error, ended = await exchange(failing("tls-handshake-stall.chaos"))
    assert isinstance(error, TimeoutError)
    assert ended == "hung, peer-closed"


async def test_the_reset_in_handshake_resets() -> None:
    error, ended = await exchange(failing("tls-reset-in-handshake.chaos"))
    assert isinstance(error, ConnectionResetError)
    assert ended == "reset"


async def test_the_alert_fails_the_handshake_as_a_handshake_failure() -> None:
    error, ended = await exchange(failing("tls-handshake-alert.chaos"))
    assert isinstance(error, ssl.SSLError) and "SSLV3_ALERT_HANDSHAKE_FAILURE" in str(error)
    assert ended == "alert"


async def test_sni_selects_the_wrong_name_certificate_on_the_wire() -> None:
    def client(sock: socket.socket) -> object:
        with proxy_context().wrap_socket(sock, server_hostname="tls-wrong-name.chaos") as tls:
            return tls.getpeercert()["subjectAltName"]
    names, _ = await exchange(client)
    assert names == (("DNS", "not-the-upstream.invalid"),)


class BioClient:
    """A proxy's side on a blocking socket, its TLS in memory: it decides what each send carries."""

    def __init__(self, sock: socket.socket, hostname: str) -> None:
        self.sock, self.incoming, self.outgoing = sock, ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = proxy_context().wrap_bio(self.incoming, self.outgoing, server_hostname=hostname)
        self._retry(self.tls.do_handshake)

    def _retry(self, step: Callable[[], object]) -> object:
        while True:
            try:
                result = step()
                self.flush()
                return result
            except ssl.SSLWantReadError:
                self.flush()
                data = self.sock.recv(65536)
                self.incoming.write(data) if data else self.incoming.write_eof()

    def flush(self) -> None:
        self.sock.sendall(self.outgoing.read())

    def read(self) -> bytes:
        return self._retry(lambda: self.tls.read(65536))  # type: ignore[return-value]


async def test_records_that_arrived_together_are_pending_and_readable_at_once() -> None:
    def client(sock: socket.socket) -> bytes:
        proxy = BioClient(sock, "localhost")
        proxy.tls.write(b"one")
        proxy.tls.write(b"two")
        proxy.flush()  # both records in one send
        return proxy.read()

    async def serve(tls: trio.SSLStream, transport: TlsTransport, sni: str | None) -> list[object]:
        first = await tls.receive_some(65536)
        seen = [first, transport.pending(), tls.pending()]
        with trio.fail_after(1):
            await transport.wait_readable()  # the second record sits above the socket: no wait
        seen.append(await tls.receive_some(65536))
        await tls.send_all(b"ok")
        return seen

    reply, seen = await exchange(client, serve)
    assert reply == b"ok"
    assert seen == [b"one", True, 0, b"two"]


async def test_the_facts_of_a_connection() -> None:
    def client(sock: socket.socket) -> bytes:
        context = proxy_context()
        MATERIAL.client.install(context)
        with context.wrap_socket(sock, server_hostname="tls-client-certificate-required.chaos") as tls:
            return tls.recv(10)

    async def serve(tls: trio.SSLStream, transport: TlsTransport, sni: str | None) -> TlsFacts:
        await tls.send_all(b"ok")
        assert transport.send_now(b"x") == 0
        assert transport.peer().startswith("127.0.0.1:")
        return facts_of(tls, sni)

    _, facts = await exchange(client, serve)
    assert facts == TlsFacts(
        version="TLSv1.3", cipher=facts.cipher, sni="tls-client-certificate-required.chaos", alpn="http/1.1",
        client_subject=facts.client_subject,
    )
    assert facts.cipher and facts.cipher.startswith("TLS_")
    assert facts.client_subject and facts.client_subject.startswith("O=trustme") and facts.client_subject.endswith(",CN=chaos-upstream-client")


def reading_to_the_end(sock: socket.socket) -> list[object]:
    """What a strict proxy reads until the end: data, then b"" (close_notify) or the error."""
    context = proxy_context()
    with context.wrap_socket(sock, server_hostname="localhost", suppress_ragged_eofs=False) as tls:
        seen: list[object] = []
        try:
            while data := tls.recv(65536):
                seen.append(data)
            seen.append(b"")
        except ssl.SSLEOFError as exc:
            seen.append(type(exc))
        return seen


async def test_a_fin_without_close_notify_is_a_ragged_eof_to_the_client() -> None:
    async def serve(tls: trio.SSLStream, transport: TlsTransport, sni: str | None) -> None:
        await tls.send_all(b"body")
        await transport.close(close_notify=False)

    seen, _ = await exchange(reading_to_the_end, serve)
    assert seen == [b"body", ssl.SSLEOFError]


async def test_a_close_notify_mid_body_is_a_clean_end_to_the_client() -> None:
    async def serve(tls: trio.SSLStream, transport: TlsTransport, sni: str | None) -> None:
        await tls.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        await transport.close()

    seen, _ = await exchange(reading_to_the_end, serve)
    assert seen == [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", b""]


@pytest.mark.parametrize(("notify", "ending"), [(True, "close_notify"), (False, "no-close_notify")])
async def test_the_server_tells_how_the_client_ended(notify: bool, ending: str) -> None:
    def client(sock: socket.socket) -> None:
        proxy = BioClient(sock, "localhost")
        if notify:
            with pytest.raises(ssl.SSLWantReadError):
                proxy.tls.unwrap()  # sends close_notify; the peer's answer is not awaited
            proxy.flush()

    async def serve(tls: trio.SSLStream, transport: TlsTransport, sni: str | None) -> str:
        try:
            while await tls.receive_some(65536):
                pass
        except trio.BrokenResourceError as exc:
            return ending_of(exc)
        return ending_of(None)

    _, seen = await exchange(client, serve)
    assert seen == ending


@pytest.mark.parametrize("module", ["handshake", "sni"])
def test_the_pure_modules_import_no_io(module: str) -> None:
    source = Path(importlib.import_module(f"chaos_upstream.tls.{module}").__file__ or "")
    tree = ast.parse(source.read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"trio", "socket", "ssl", "select", "os"}
