"""The blocking probe (what the locust users send) through real nginx, joined with the journal over
the admin API, and on its own."""

import http.server
import threading
from functools import partial

import pytest
import trio

from chaos_upstream.model.durations import Timing
from chaos_upstream.verifier.admin_journal import AdminJournal
from chaos_upstream.verifier.blocking import capture_blocking, probe_blocking

from conftest import CATALOGUE, T, get

TIMING = Timing(T)


async def blocking(proxy_url, name, **options):
    return await trio.to_thread.run_sync(partial(probe_blocking, proxy_url, CATALOGUE.get(name), timing=TIMING, **options))


@pytest.mark.proxy
async def test_verdicts_joined_with_the_journal_over_the_admin_api(nginx_with_admin, request):
    proxy_url, admin_url, _ = nginx_with_admin
    journal = AdminJournal(admin_url)
    request.addfinalizer(journal.close)
    truncated = await blocking(proxy_url, "truncated-chunked", journal=journal)
    assert (truncated.verdict, truncated.judgement.kind, truncated.observed["upstream_attempts"]) == ("pass", "aborted", 1)
    assert truncated.attempts[0].probe == truncated.probe_id
    broken = await blocking(proxy_url, "bad-status-line", journal=journal)
    assert (broken.verdict, broken.seen) == ("fail", "malformed")
    assert broken.reason.startswith("expected the client to see a 502; it saw an invalid HTTP/1.1 response")
    hung = await blocking(proxy_url, "never-respond", journal=journal)
    assert (hung.verdict, hung.seen, len(hung.attempts)) == ("pass", "status 504", 1), hung.explain()


@pytest.mark.proxy
async def test_without_a_journal_the_verdict_rests_on_what_the_client_saw(nginx_with_admin):
    proxy_url, _, _ = nginx_with_admin
    result = await blocking(proxy_url, "reset-before-response")
    assert (result.verdict, result.seen, result.observed["upstream_attempts"]) == ("pass", "status 502", 0)
    assert "never reached" not in result.reason


@pytest.mark.proxy
async def test_a_journal_that_cannot_be_read_leaves_the_verdict_to_what_the_client_saw(nginx_with_admin):
    class Gone:
        def records(self, **query):
            raise ConnectionRefusedError(111, "Connection refused")

    proxy_url, _, _ = nginx_with_admin
    result = await blocking(proxy_url, "bad-status-line", journal=Gone())
    assert (result.verdict, result.seen) == ("fail", "malformed")
    assert result.reason.endswith("(not joined with the upstream's journal, which could not be read: [Errno 111] Connection refused)")


@pytest.mark.parametrize("answer, problem", [
    (b'[{"type": "requests", "t": 1}]', "type 'requests' is none of"),
    (b'[{"type": "request", "t": 1, "conn": 1, "renamed": 2}]', "unknown fields renamed"),
    (b'{"not": "a list"}', "not journal records"),
    (b"<html>an admin page</html>", "not journal records"),
])
def test_an_admin_api_answering_what_is_not_records_is_an_error_that_says_so(answer, problem):
    class Garbage(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Garbage) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        journal = AdminJournal(f"http://127.0.0.1:{server.server_address[1]}")
        try:
            with pytest.raises(OSError, match=problem):
                journal.records(probe="p", type="request", running=True)
        finally:
            journal.close()
            server.shutdown()


async def test_an_unreachable_proxy_is_inconclusive_and_says_so():
    result = await blocking("http://127.0.0.1:9", "healthy")
    assert result.verdict == "inconclusive"
    assert result.reason.startswith("could not connect to the proxy at http://127.0.0.1:9")


async def test_the_blocking_capture_sees_a_reset_and_a_fin(start_upstream):
    upstream = await start_upstream()
    host, port = upstream.addresses[0]
    reset = await trio.to_thread.run_sync(
        partial(capture_blocking, host, port, get(scenario="reset-before-response"), limit=5 * T, done=lambda piece: False))
    assert (reset.ending, reset.data) == ("rst", b"")
    closed = await trio.to_thread.run_sync(
        partial(capture_blocking, host, port, get(scenario="truncated-chunked"), limit=5 * T, done=lambda piece: False))
    assert closed.ending == "fin" and closed.data.startswith(b"HTTP/1.1 200 OK\r\n") and closed.elapsed < 5 * T
