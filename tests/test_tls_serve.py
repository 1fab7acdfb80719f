"""The upstream over TLS (serve --tls): every fault of the catalogue as over plain HTTP, the SNI
NAME.chaos choosing the scenario, the TLS facts of each connection in the journal (SNI, version,
ALPN, whether the peer ended with close_notify), a handshake that fails journaled as such, and
the flags refusing what cannot be served. Real sockets on 127.0.0.1; the client is trio's own TLS
client, trusting the throwaway CA."""

from __future__ import annotations

import contextlib
import datetime
import json
import ssl
import subprocess

import pytest
import trio

from chaos_upstream.records import RequestRecord
from chaos_upstream.tls.contexts import Contexts
from chaos_upstream.tls.material import DEFAULT_NAMES, Material, generate

from conftest import CATALOGUE, T, admin_call, get, settled
from test_cli import COMMAND, Server

MATERIAL: Material = generate(
    [*DEFAULT_NAMES, *(f"{scenario.name}.chaos" for scenario in CATALOGUE)], now=datetime.datetime.now(datetime.timezone.utc),
)
LIMIT = 3.0


def trusting() -> ssl.SSLContext:
    """A client context that trusts the throwaway CA, as a proxy given --tls-ca does."""
    context = ssl.create_default_context(cadata=MATERIAL.ca_pem.decode())
    context.set_alpn_protocols(["http/1.1"])
    return context


async def tls_upstream(start_upstream):
    return await start_upstream(tls=Contexts(MATERIAL))


async def exchange(upstream, request: bytes, *, name: str = "localhost", leave: str | None = None, context: ssl.SSLContext | None = None) -> bytes:
    """Send `request` over TLS with SNI `name`; what comes back until the server ends (with its
    close_notify, or a FIN without one: trio raises then), or, when the client is to `leave`,
    until the healthy body has come, the client then ending with "close_notify" or a bare "fin"."""
    host, port = upstream.addresses[0]
    raw = await trio.open_tcp_stream(host, port)
    tls = trio.SSLStream(raw, context or trusting(), server_hostname=name)
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
    (["--default", "tls-wrong-name"], "'tls-wrong-name' is served over TLS only: give --tls"),
    (["--mix", "healthy=1,tls-handshake-stall=1"], "'tls-handshake-stall' is served over TLS only: give --tls"),
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


SENT_PAST = b"chaos-upstream: served past a TLS fault!\n"
TLS_WIRE = {
    "tls-healthy": ("body", b"chaos-upstream: healthy\n"),
    "tls-handshake-stall": ("timeout", None),
    "tls-reset-in-handshake": ("reset", None),
    "tls-handshake-alert": ("refused", "SSLV3_ALERT_HANDSHAKE_FAILURE"),
    "tls-expired-certificate": ("refused", "certificate has expired"),
    "tls-wrong-name": ("refused", "Hostname mismatch"),
    "tls-untrusted-certificate": ("refused", "self-signed certificate"),
    "tls-protocol-mismatch": ("refused", "TLSV1_ALERT_PROTOCOL_VERSION"),
    "tls-client-certificate-required": ("refused", "CERTIFICATE_REQUIRED"),
    "tls-close-delimited-no-close-notify": ("no-close_notify", 1000),
    "tls-close-notify-mid-body": ("close_notify", 500),
}
"""Each TLS scenario named by SNI, as a client that trusts the CA sees it: the healthy body; no
answer within 3T; a reset; its handshake refused (and OpenSSL's words for why); or a body of N
bytes ended with, or without, close_notify."""


def test_every_tls_scenario_is_on_the_wire():
    assert sorted(TLS_WIRE) == sorted(scenario.name for scenario in CATALOGUE if scenario.tls is not None)


@pytest.mark.parametrize("name", sorted(TLS_WIRE))
async def test_each_tls_scenario_named_by_sni(start_upstream, name):
    upstream = await tls_upstream(start_upstream)
    how, what = TLS_WIRE[name]
    raw = await trio.open_tcp_stream(*upstream.addresses[0])
    tls = trio.SSLStream(raw, trusting(), server_hostname=f"{name}.chaos")
    received, ending = bytearray(), None
    with trio.move_on_after(3 * T) as waited:
        try:
            await tls.send_all(get(extra="Connection: close\r\n"))
            while data := await tls.receive_some(65536):
                received += data
            ending = "close_notify"
        except trio.BrokenResourceError as exc:
            ending = exc.__cause__
    await raw.aclose()
    if how == "timeout":
        assert waited.cancelled_caught and not received
    elif how == "reset":
        assert isinstance(ending, ConnectionResetError) and not received
    elif how == "refused":
        assert isinstance(ending, ssl.SSLError) and what in str(ending) and not received
    elif how == "body":
        assert received.endswith(what) and ending == "close_notify"
    else:
        head, body = bytes(received).split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 OK") and len(body) == what
        assert (ending == "close_notify") is (how == "close_notify")
        assert how == "close_notify" or isinstance(ending, ssl.SSLEOFError)
    [connection] = await settled(upstream.journal, type="connection", count=1)
    assert connection.sni == f"{name}.chaos"
    acted = [(record.scenario, record.ended) for record in upstream.journal.records(type="accept")]
    if CATALOGUE.get(name).connection_level:  # the fault acted at the handshake: one attempt, journaled
        assert [scenario for scenario, _ in acted] == [name] and acted[0][1] == ENDED.get(name, acted[0][1])
        assert (acted[0][1] == "handshake-done") is (how != "refused" and how not in ENDED_BY_FAULT)
    else:
        assert acted == []


ENDED = {"tls-handshake-stall": "hung, peer-closed", "tls-reset-in-handshake": "reset", "tls-handshake-alert": "alert"}
"""How a handshake fault's run ends, as journaled."""
ENDED_BY_FAULT = {"timeout", "reset"}


async def test_the_client_certificate_of_the_trusted_ca_gets_through_mtls(start_upstream):
    upstream = await tls_upstream(start_upstream)
    context = trusting()
    MATERIAL.client.install(context)
    data = await exchange(upstream, get(extra="Connection: close\r\n"), name="tls-client-certificate-required.chaos", context=context)
    assert data.endswith(b"chaos-upstream: healthy\n")
    [connection] = await settled(upstream.journal, type="connection", count=1)
    assert connection.client_certificate.endswith("CN=chaos-upstream-client")


async def test_an_active_tls_scenario_acts_at_the_next_handshake(start_upstream):
    upstream = await tls_upstream(start_upstream)
    upstream.active = "tls-wrong-name"  # what PUT /active does
    raw = await trio.open_tcp_stream(*upstream.addresses[0])
    tls = trio.SSLStream(raw, trusting(), server_hostname="localhost")
    with trio.fail_after(LIMIT), pytest.raises(trio.BrokenResourceError) as refused:
        await tls.do_handshake()
    await raw.aclose()
    assert "Hostname mismatch" in str(refused.value.__cause__)
    [acted] = await settled(upstream.journal, type="accept", count=1)
    assert acted.scenario == "tls-wrong-name"


def hello_bytes() -> bytes:
    """The first flight of Python's TLS client for `localhost`: a whole ClientHello."""
    outgoing = ssl.MemoryBIO()
    client = trusting().wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize(("sent", "ended"), [
    (b"\x16\x03\x01\xff\xff" + b"\x01\xff\xff\xff", "tls-not-client-hello"),  # a ClientHello past 64 KiB
    (b"\x16\x03\x01\x00\x05" + b"\x01\x00\x00\x01" + b"\x03", "tls-not-client-hello"),  # one cut short inside
    (hello_bytes() + b"\x17\x03\x03\x00\x05" + b"\x00" * 5, "tls-handshake-failed: "),  # data instead of the handshake's end
    (hello_bytes()[:40], "tls-timeout"),  # half a ClientHello, then nothing
], ids=["hello-past-64k", "hello-cut-short", "data-before-finished", "half-a-hello"])
async def test_a_hostile_tls_client_ends_its_connection_and_no_other(start_upstream, sent, ended):
    upstream = await start_upstream(tls=Contexts(MATERIAL), idle_timeout=0.3)
    async with await trio.open_tcp_stream(*upstream.addresses[0]) as stream:
        with trio.fail_after(LIMIT):
            await stream.send_all(sent)
            with contextlib.suppress(trio.BrokenResourceError):
                while await stream.receive_some(65536):
                    pass
    [connection] = await settled(upstream.journal, type="connection", count=1)
    assert connection.ended.startswith(ended), connection.ended
    assert (await exchange(upstream, get(extra="Connection: close\r\n"))).endswith(b"chaos-upstream: healthy\n")  # still serving


async def test_garbage_http_inside_a_good_tls_session_gets_its_400(start_upstream):
    upstream = await tls_upstream(start_upstream)
    data = await exchange(upstream, b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 ")
    [bad] = await settled(upstream.journal, type="bad-request", count=1)
    assert bad.status == 400


def test_workers_serving_tls_present_certificates_of_one_ca(tmp_path):
    server = Server("--tls", "--tls-ca", str(tmp_path / "ca.pem"), "--workers", "2", "--admin-port", "0")
    try:
        assert server.line.startswith("chaos-upstream listening on https://") and "--tls-material" not in server.settings
        admin = int(server.process.stdout.readline().strip().rsplit(":", 1)[1])
        context = ssl.create_default_context(cafile=tmp_path / "ca.pem")
        import socket

        seen, workers = set(), set()
        for _ in range(100):  # the kernel spreads connections over both workers, by a hash of each one's ports
            with socket.create_connection(("127.0.0.1", server.port), timeout=LIMIT) as sock:
                with context.wrap_socket(sock, server_hostname="localhost") as tls:  # verified against the one CA
                    tls.sendall(get(extra="Connection: close\r\n"))
                    answer = b""
                    while data := tls.recv(65536):
                        answer += data
                    seen.add(answer.startswith(b"HTTP/1.1 200 OK"))
            status, body = admin_call(admin, "GET", "/journal?type=request")
            workers = {record["worker"] for record in json.loads(body)}
            if workers == {0, 1}:
                break
        assert seen == {True} and workers == {0, 1}  # both workers served, one CA
    finally:
        assert server.stop() == 0
