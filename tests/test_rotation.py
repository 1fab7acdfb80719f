"""A timeline starts only once the proxy sends requests to every member again: measured through real
nginx, whose default passive check holds a member out for 10 s after one failed attempt."""

import pytest

from chaos_upstream.errors import ConfigError

from chaos_upstream.matrix import running
from chaos_upstream.model.durations import Timing
from chaos_upstream.proxies import require
from chaos_upstream.harness import serving
from chaos_upstream.verifier.check import check
from chaos_upstream.verifier.classify import classify
from chaos_upstream.verifier.capture import capture
from chaos_upstream.verifier.series import in_rotation

from conftest import CATALOGUE, T, get

TIMING = Timing(T)
ROLLING = CATALOGUE.get("rolling-deploy")
EVERY = 0.025


@pytest.mark.proxy
async def test_nginx_is_in_rotation_at_once_and_not_while_it_holds_a_member_out(tmp_path):
    async with (
        serving(CATALOGUE, [("127.0.0.1", 0)] * 2, timing=TIMING) as served,
        running(require("nginx"), served.addresses, T, tmp_path) as proxy,
    ):
        waited = await in_rotation(proxy.url, ROLLING, served.journal, served.members, timing=TIMING, every=EVERY)
        assert waited is not None and waited < 0.5
        await served.members[1].stop("finish")
        host, port = proxy.url.removeprefix("http://").split(":")
        answers = [classify(await capture(host, int(port), get(), limit=T)).status for _ in range(4)]
        assert answers == [200] * 4  # nginx tried member 1, was refused, and passed the request on to member 0
        await served.members[1].start()
        held_out = await in_rotation(proxy.url, ROLLING, served.journal, served.members, timing=TIMING, every=EVERY, limit=0.5)
        assert held_out is None, proxy.error_log()


async def test_a_member_the_proxy_never_sends_to_is_never_in_rotation():
    async with serving(CATALOGUE, [("127.0.0.1", 0)] * 2, timing=TIMING) as served:
        only_member_0 = "http://{}:{}".format(*served.addresses[0])
        assert await in_rotation(only_member_0, ROLLING, served.journal, served.members, timing=TIMING, every=EVERY, limit=0.3) is None
        fleet_of_one = served.members[:1]
        assert await in_rotation(only_member_0, ROLLING, served.journal, fleet_of_one, timing=TIMING, every=EVERY) is not None


@pytest.mark.proxy
async def test_through_a_fleet_check_probes_one_at_a_time_each_once_every_member_is_in_rotation(tmp_path):
    launcher = require("haproxy")
    async with (
        serving(CATALOGUE, [("127.0.0.1", 0)] * 2, timing=TIMING) as served,
        running(launcher, served.addresses, T, tmp_path) as proxy,
    ):
        scenarios = [CATALOGUE.get("slow-response"), CATALOGUE.get("truncated-chunked")]
        report = await check(proxy.url, scenarios, served.journal, timing=TIMING, profile=launcher.profile, members=served.members)
    slow, truncated = report.results
    assert (slow.verdict, truncated.verdict) == ("pass", "pass"), report.results
    records = served.journal.records(type="request")
    slow_end = max(r.t + r.duration for r in records if r.probe == slow.probe_id)
    truncated_start = min(r.t for r in records if r.probe == truncated.probe_id)
    between = {r.member for r in records if slow_end <= r.t <= truncated_start and r.scenario == "healthy"}
    assert truncated_start >= slow_end and between == {0, 1}


async def test_check_refuses_a_fleet_member_the_proxy_never_forwards_to():
    async with serving(CATALOGUE, [("127.0.0.1", 0)] * 2, timing=TIMING) as served:
        only_member_0 = "http://{}:{}".format(*served.addresses[0])
        with pytest.raises(ConfigError) as refused:
            await check(only_member_0, [CATALOGUE.get("healthy")], served.journal, timing=TIMING, members=served.members,
                        rotation_limit=0.3)
    host, port = served.addresses[1]
    assert str(refused.value) == (f"--upstream {host}:{port}: no request came through the proxy in 0.3 s; give --upstream "
                                  "only the addresses your proxy forwards to")
