"""The admin API on real sockets: health, readiness, metrics, the active switch, the journal, the token."""

import json

import pytest
import trio

from chaos_upstream.server.admin import Admin
from chaos_upstream.model.durations import Timing
from chaos_upstream.server.control import Local
from chaos_upstream.server.fleet import Fleet
from chaos_upstream.server.journal import Journal
from chaos_upstream.server.upstream import Settings
from chaos_upstream.verifier.capture import capture
from chaos_upstream.verifier.classify import classify

from conftest import CATALOGUE, T, get, refused, settled
from test_cli import run


@pytest.fixture
async def admin(nursery):
    """(fleet, start): a fleet of one member, and start(token=None), which serves an Admin for it and
    returns its address."""
    fleet = Fleet(CATALOGUE, [Settings(port=0, timing=Timing(T))], Journal())
    await nursery.start(fleet.run)

    async def start(token=None):
        [address] = await nursery.start(Admin(Local(fleet, "healthy", Timing(T)), token).run, "127.0.0.1", 0)
        return address

    return fleet, start


async def call(address, method: str, path: str, body: bytes = b"", token: str | None = None, extra: str | None = None):
    """(status, body) of one call; a PUT or POST says its body is JSON unless `extra` gives other headers."""
    if extra is None:
        extra = "Content-Type: application/json\r\n" if method in ("PUT", "POST") else ""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{address[1]}\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
    head += extra
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    seen = await capture(*address, head.encode() + b"\r\n" + body, limit=2.0)
    observation = classify(seen)
    assert observation.kind == "status", observation
    return observation.status, response(seen.data)[2]


def response(data: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """(status, headers, body) of one whole response's bytes, its framing (chunked too) undone by h11."""
    import h11

    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    client.receive_data(b"")
    head, body = client.next_event(), b""
    while isinstance(event := client.next_event(), h11.Data):
        body += event.data
    assert isinstance(event, h11.EndOfMessage), event
    return head.status_code, dict(head.headers), body


async def call_json(address, method, path, body=b"", token=None, extra=None):
    status, payload = await call(address, method, path, body, token, extra)
    return status, json.loads(payload)


async def test_health_and_readiness(admin):
    upstream, start = admin
    address = await start()
    assert await call_json(address, "GET", "/healthz") == (200, {"status": "ok"})
    status, ready = await call_json(address, "GET", "/readyz")
    assert status == 200 and ready["ready"] is True
    assert [tuple(a) for a in ready["addresses"]] == upstream.addresses
    upstream.stop()
    assert (await call_json(address, "GET", "/readyz"))[0] == 503


async def test_the_active_switch_changes_what_unnamed_requests_get_and_delete_restores_it(admin):
    upstream, start = admin
    address = await start()
    assert await call_json(address, "PUT", "/active", b'{"scenario": "upstream-502"}') == (200, {"active": "upstream-502"})
    assert classify(await capture(*upstream.addresses[0], get(), limit=T)).status == 502
    assert (await call_json(address, "DELETE", "/active"))[0] == 200
    assert classify(await capture(*upstream.addresses[0], get(), limit=T)).status == 200


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [(b'{"scenario": "nope"}', 404, "no scenario named 'nope'"), (b"{not json", 400, '{"scenario": NAME}')],
)
async def test_a_bad_switch_changes_nothing(admin, body, status, error):
    upstream, start = admin
    address = await start()
    code, reply = await call_json(address, "PUT", "/active", body)
    assert code == status and error in reply["error"]
    assert upstream.members[0].active is None


async def test_metrics_count_requests_by_scenario(admin):
    upstream, start = admin
    address = await start()
    for scenario in ["upstream-502", "upstream-502", "truncated-chunked"]:
        await capture(*upstream.addresses[0], get(scenario=scenario), limit=T / 2)
    await settled(upstream.journal, type="request", count=3)
    status, text = await call(address, "GET", "/metrics")
    assert status == 200
    assert b'chaos_upstream_requests_total{scenario="upstream-502"} 2.0' in text
    assert b'chaos_upstream_request_endings_total{ended="closed",scenario="truncated-chunked"} 1.0' in text


async def test_metrics_say_which_members_listen(admin):
    fleet, start = admin
    address = await start()
    assert b'chaos_upstream_member_listening{member="0"} 1.0' in (await call(address, "GET", "/metrics"))[1]
    await fleet.members[0].stop("finish")
    assert b'chaos_upstream_member_listening{member="0"} 0.0' in (await call(address, "GET", "/metrics"))[1]


async def test_the_journal_by_probe(admin):
    upstream, start = admin
    address = await start()
    await capture(*upstream.addresses[0], get(probe="one") + get(probe="two"), limit=T / 2)
    await settled(upstream.journal, type="request", count=2)
    status, records = await call_json(address, "GET", "/journal?probe=two")
    assert status == 200 and [r["probe"] for r in records] == ["two"]


async def test_the_journal_shows_requests_still_running_only_when_asked(admin, nursery):
    upstream, start = admin
    address = await start()
    nursery.start_soon(lambda: capture(*upstream.addresses[0], get(scenario="never-respond", probe="hung"), limit=T))
    with trio.fail_after(T):
        while not upstream.journal.records(probe="hung", running=True):
            await trio.sleep(0.005)
    assert (await call_json(address, "GET", "/journal?probe=hung"))[1] == []
    status, [record] = await call_json(address, "GET", "/journal?probe=hung&type=request&running=1")
    assert status == 200 and record["running"] is True and record["scenario"] == "never-respond"


async def test_scenarios_lists_the_catalogue(admin, catalogue):
    _, start = admin
    status, listing = await call_json(await start(), "GET", "/scenarios")
    assert status == 200 and [s["name"] for s in listing["scenarios"]] == catalogue.names()


async def test_a_token_is_required_on_every_call_when_set(admin):
    upstream, start = admin
    address = await start(token="s3cret")
    assert (await call_json(address, "GET", "/healthz"))[0] == 401
    assert (await call_json(address, "PUT", "/active", b'{"scenario": "upstream-502"}', token="wrong"))[0] == 401
    assert upstream.members[0].active is None
    assert (await call_json(address, "GET", "/healthz", token="s3cret"))[0] == 200


async def test_unknown_calls_and_garbage_get_4xx_and_the_api_goes_on(admin):
    _, start = admin
    address = await start()
    assert (await call_json(address, "GET", "/nope"))[0] == 404
    assert await call_json(address, "POST", "/active") == (405, {"error": "allowed: DELETE, PUT"})
    seen = await capture(*address, b"\x00\x01garbage\r\n\r\n", limit=1.0)
    assert seen.data.startswith(b"HTTP/1.1 400 ")
    assert (await call_json(address, "GET", "/healthz"))[0] == 200


def test_serve_refuses_a_reachable_admin_api_without_a_token():
    result = run("serve", "--admin-host", "0.0.0.0", "--admin-port", "0")
    assert result.returncode == 2 and "give --admin-token" in result.stderr


@pytest.fixture
async def pair(nursery):
    """(fleet, address of its admin API): a fleet of two members."""
    fleet = Fleet(CATALOGUE, [Settings(port=0, timing=Timing(T))] * 2, Journal())
    await nursery.start(fleet.run)
    [address] = await nursery.start(Admin(Local(fleet, "healthy", Timing(T))).run, "127.0.0.1", 0)
    return fleet, address


async def status_of(address) -> int:
    return classify(await capture(*address, get(extra="Connection: close\r\n"), limit=T)).status


async def test_one_member_can_serve_a_fault_while_the_other_stays_healthy(pair):
    fleet, address = pair
    assert await call_json(address, "PUT", "/active", b'{"scenario": "upstream-502", "member": 1}') == (
        200, {"active": "upstream-502", "member": 1})
    assert [await status_of(a) for a in fleet.addresses] == [200, 502]
    status, error = await call_json(address, "PUT", "/active", b'{"scenario": "healthy", "member": 2}')
    assert (status, error["error"]) == (400, "member: no member 2 in a fleet of 2")


async def test_a_timeline_plays_on_the_members_one_at_a_time(pair):
    import trio

    fleet, address = pair
    begun = trio.current_time()
    status, started = await call_json(address, "POST", "/timeline", b'{"scenario": "rolling-deploy"}')
    assert status == 202 and [(c["at"], c["member"], c["do"]) for c in started["changes"]] == [
        (T, 0, "stop"), (3 * T, 0, "start"), (3 * T, 1, "stop"), (5 * T, 1, "start")]
    assert (await call_json(address, "POST", "/timeline", b'{"scenario": "rolling-deploy"}'))[0] == 409
    await trio.sleep_until(begun + 2 * T)
    assert await refused(fleet.addresses[0]) and await status_of(fleet.addresses[1]) == 200
    await trio.sleep_until(begun + 4 * T)
    assert await status_of(fleet.addresses[0]) == 200 and await refused(fleet.addresses[1])
    await trio.sleep_until(begun + 6 * T)
    assert [await status_of(a) for a in fleet.addresses] == [200, 200] and not fleet.playing
    status, error = await call_json(address, "POST", "/timeline", b'{"scenario": "healthy"}')
    assert (status, error["error"]) == (409, "'healthy' has no timeline to play")
