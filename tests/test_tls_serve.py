"""The upstream over TLS (serve --tls): every fault of the catalogue as over plain HTTP, the SNI
NAME.chaos choosing the scenario, the TLS facts of each connection in the journal (SNI, version,
ALPN, whether the peer ended with close_notify), a handshake that fails journaled as such, and
the flags refusing what cannot be served. Real sockets on 127.0.0.1; the client is trio's own TLS
client, trusting the throwaway CA."""

from __future__ import annotations

import datetime
import ssl
import subprocess

import pytest
import trio

from chaos_upstream.records import ConnectionRecord, RequestRecord
from chaos_upstream.tls.contexts import Contexts
from chaos_upstream.tls.material import DEFAULT_NAMES, Material, generate

from conftest import get, settled
from test_cli import COMMAND, ROOT, Server, run

MATERIAL: Material = generate([*DEFAULT_NAMES, "truncated-chunked.chaos"], now=datetime.datetime.now(datetime.timezone.utc))
LIMIT = 3.0


def trusting() -> ssl.SSLContext:
    """A client context that trusts the throwaway CA, as a proxy given --tls-ca does."""
    context = ssl.create_default_context(cadata=MATERIAL.ca_pem.decode())
    context.set_alpn_protocols(["http/1.1"])
    return context


async def tls_upstream(start_upstream):
    return await start_upstream(tls=Contexts(MATERIAL))


async def exchange(upstream, request: bytes, *, name: str = "localhost", leave: str | None = None) -> bytes:
    """Send `request` over TLS with SNI `name`; what comes back until the server ends (with its
    close_notify, or a FIN without one: trio raises then), or, when the client is to `leave`,
    until the healthy body has come, the client then ending with "close_notify" or a bare "fin"."""
    host, port = upstream.addresses[0]
    raw = await trio.open_tcp_stream(host, port)
    tls = trio.SSLStream(raw, trusting(), server_hostname=name)
    received = bytearray()
    with trio.fail_after(LIMIT):
        await tls.send_all(request)
        try:
            while data := await tls.receive_some(65536):
                received += data
                if leave and received.endswith(b"chaos-upstream: healthy\n"):
                    break
        except trio.BrokenResourceError:
            pass
        if leave == "fin":
            await raw.aclose()  # the socket alone: a FIN, no close_notify
        else:
            await tls.aclose()
    return bytes(received)


async def test_healthy_over_tls_and_the_journal_has_the_sessions_facts(start_upstream):
    upstream = await tls_upstream(start_upstream)
    data = await exchange(upstream, get(extra="Connection: close\r\n"))
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"chaos-upstream: healthy\n")
    [connection] = await settled(upstream.journal, type="connection", count=1)
    assert (connection.sni, connection.tls_version, connection.alpn) == ("localhost", "TLSv1.3", "http/1.1")
    assert connection.tls_cipher.startswith("TLS_") and connection.client_certificate is None


@pytest.mark.parametrize("leave", ["close_notify", "fin"])
async def test_the_journal_says_whether_the_peer_ended_with_close_notify(start_upstream, leave):
    upstream = await tls_upstream(start_upstream)
    data = await exchange(upstream, get(), leave=leave)  # keep-alive: the client ends it
    assert data.endswith(b"chaos-upstream: healthy\n")
    [connection] = await settled(upstream.journal, type="connection", count=1)
    assert connection.peer_close_notify is (leave == "close_notify") and connection.ended == "peer-closed"


async def test_a_truncated_chunked_body_over_tls_is_still_cut_short(start_upstream):
    upstream = await tls_upstream(start_upstream)
    data = await exchange(upstream, get(scenario="truncated-chunked"))
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding: chunked" in data
    assert not data.endswith(b"0\r\n\r\n")
    [request] = await settled(upstream.journal, type="request", count=1)
    assert (request.scenario, request.ended, request.response.last_chunk) == ("truncated-chunked", "closed", False)


async def test_the_sni_names_the_scenario_of_requests_that_name_none(start_upstream):
    upstream = await tls_upstream(start_upstream)
    data = await exchange(upstream, get(), name="truncated-chunked.chaos")
    assert b"Transfer-Encoding: chunked" in data and not data.endswith(b"0\r\n\r\n")
    [request] = await settled(upstream.journal, type="request", count=1)
    assert (request.scenario, request.chosen_by) == ("truncated-chunked", "active")
    [connection] = await settled(upstream.journal, type="connection", count=1)
    assert connection.sni == "truncated-chunked.chaos"


async def test_a_reset_over_tls_is_a_reset_not_a_clean_close(start_upstream):
    upstream = await tls_upstream(start_upstream)
    host, port = upstream.addresses[0]
    async with trio.SSLStream(await trio.open_tcp_stream(host, port), trusting(), server_hostname="localhost") as tls:
        with trio.fail_after(LIMIT):
            await tls.send_all(get(scenario="reset-before-response"))
            with pytest.raises(trio.BrokenResourceError) as broken:
                await tls.receive_some(65536)  # a close_notify would read as b""
    assert isinstance(broken.value.__cause__, ConnectionResetError)
    [request] = await settled(upstream.journal, type="request", count=1)
    assert request.ended == "reset"


async def test_plain_http_to_a_tls_port_is_closed_and_journaled(start_upstream):
    upstream = await tls_upstream(start_upstream)
    async with await trio.open_tcp_stream(*upstream.addresses[0]) as stream:
        with trio.fail_after(LIMIT):
            await stream.send_all(get())
            assert await stream.receive_some(65536) == b""
    [connection] = await settled(upstream.journal, type="connection", count=1)
    assert connection.ended == "tls-not-client-hello" and connection.requests == 0


async def test_a_client_that_refuses_the_certificate_is_journaled_as_a_failed_handshake(start_upstream):
    upstream = await tls_upstream(start_upstream)
    host, port = upstream.addresses[0]
    raw = await trio.open_tcp_stream(host, port)
    tls = trio.SSLStream(raw, ssl.create_default_context(), server_hostname="localhost")
    with trio.fail_after(LIMIT), pytest.raises(trio.BrokenResourceError):
        await tls.do_handshake()  # it does not trust the throwaway CA
    await raw.aclose()  # as a proxy does: trio's client raises without sending its alert
    [connection] = await settled(upstream.journal, type="connection", count=1)
    assert connection.ended.startswith("tls-handshake-failed: ")
    assert connection.sni == "localhost" and connection.tls_version is None
    assert not [record for record in upstream.journal.records() if isinstance(record, RequestRecord)]


def test_serve_tls_writes_the_ca_and_announces_https(tmp_path):
    server = Server("--tls", "--tls-ca", str(tmp_path / "ca.pem"))
    try:
        assert server.line.startswith("chaos-upstream listening on https://127.0.0.1:")
        context = ssl.create_default_context(cafile=tmp_path / "ca.pem")
        import socket

        for name in ("localhost", "healthy.chaos", "never-respond.chaos"):  # every scenario's NAME.chaos is a name of the certificate
            with socket.create_connection(("127.0.0.1", server.port), timeout=LIMIT) as sock:
                with context.wrap_socket(sock, server_hostname=name) as tls:
                    assert tls.version() == "TLSv1.3"
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--tls-ca", "ca.pem"], "--tls-ca: give --tls too"),
    (["--tls", "--tls-cert", "cert.pem"], "--tls-cert and --tls-key: give both"),
    (["--tls", "--tls-cert", "missing.pem", "--tls-key", "missing.pem"], "--tls-cert missing.pem --tls-key missing.pem: No such file"),
    (["--tls", "--tls-cert", "garbage.pem", "--tls-key", "garbage.pem"], "--tls-cert garbage.pem --tls-key garbage.pem: "),
    (["--tls", "--tls-client-ca", "garbage.pem"], "--tls-client-ca garbage.pem: "),
    (["--tls", "--tls-ca", "no/such/dir/ca.pem"], "--tls-ca no/such/dir/ca.pem: No such file or directory"),
    (["--tls", "--workers", "2"], "--tls serves from one process"),
])
def test_tls_flags_that_cannot_be_served_exit_2_naming_the_flag(tmp_path, args, message):
    (tmp_path / "garbage.pem").write_bytes(b"\x00\xffnot a pem\n")
    result = subprocess.run([*COMMAND, "serve", "--port", "0", *args], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "listening" not in result.stdout


def test_the_users_own_certificate_is_served(tmp_path):
    (tmp_path / "cert.pem").write_bytes(MATERIAL.server.chain_pem)
    (tmp_path / "key.pem").write_bytes(MATERIAL.server.key_pem)
    server = Server("--tls", "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem"))
    try:
        import socket

        with socket.create_connection(("127.0.0.1", server.port), timeout=LIMIT) as sock:
            with trusting().wrap_socket(sock, server_hostname="localhost") as tls:
                tls.sendall(get(extra="Connection: close\r\n"))
                assert tls.recv(65536).startswith(b"HTTP/1.1 200 OK")
    finally:
        assert server.stop() == 0
