"""Apache Traffic Server through the verifier, and what its generated configuration promises."""

from __future__ import annotations

import http.client
from contextlib import closing
from pathlib import Path

import pytest

from chaos_upstream.proxies import get_launcher, require

from conftest import check_through
from test_proxy_launchers import Answering, upstream

pytestmark = pytest.mark.proxy


async def test_a_get_without_response_is_sent_four_times_then_answered_502(tmp_path: Path) -> None:
    report, _ = await check_through("trafficserver", tmp_path, only=["close-before-response"])
    [result] = report.results
    assert result.verdict == "pass", result.explain()
    assert result.reason == "the client saw a complete 502 with a 255-byte body, as expected"
    assert len(result.attempts) == 4  # connect_attempts_max_retries 3, Traffic Server's default


async def test_a_four_digit_status_code_is_passed_on_to_the_client(tmp_path: Path) -> None:
    report, _ = await check_through("trafficserver", tmp_path, only=["invalid-status-code"])
    [result] = report.results
    assert result.verdict == "fail", result.explain()
    assert "illegal status line: b'HTTP/1.1 1000 Nope'" in result.reason


def test_records_set_every_upstream_timeout_in_whole_seconds_and_no_cache(tmp_path: Path) -> None:
    text = get_launcher("trafficserver").config(8080, [("127.0.0.1", 8081)], 0.25, tmp_path)
    for record in ("connect_attempts_timeout", "post_connect_attempts_timeout",
                   "parent_proxy.connect_attempts_timeout", "transaction_no_activity_timeout_out"):
        assert f"\nCONFIG proxy.config.http.{record} INT 1\n" in text  # 0.25 s rounds up to 1 s
    assert "\nCONFIG proxy.config.http.cache.http INT 0\n" in text
    assert "\nCONFIG proxy.config.url_remap.pristine_host_hdr INT 1\n" in text
    assert "\nCONFIG proxy.config.http.parent_proxy.disable_parent_markdowns INT 0\n" in text


def test_the_deploy_safe_variant_never_marks_a_parent_down(tmp_path: Path) -> None:
    text = get_launcher("trafficserver:deploy-safe").config(8080, [("127.0.0.1", 8081)], 1, tmp_path)
    assert "\nCONFIG proxy.config.http.parent_proxy.disable_parent_markdowns INT 1\n" in text


def test_remap_rules_go_longest_prefix_first_since_the_first_match_wins(tmp_path: Path) -> None:
    text = get_launcher("trafficserver").config(8080, [("127.0.0.1", 8081)], 1, tmp_path, routes={
        "/_chaos/a/": ("127.0.0.1", 8082), "/_chaos/a/b/": ("127.0.0.1", 8083)})
    remap = text.split("# ==> etc/remap.config <==\n")[1].split("# ==> ")[0]
    assert remap == ("map /_chaos/a/b/ http://127.0.0.1:8083/_chaos/a/b/\n"
                     "map /_chaos/a/ http://127.0.0.1:8082/_chaos/a/\n"
                     "map / http://127.0.0.1:8081/\n")


class Named(Answering):
    """Answers every request on the connection with its own port and the Host it got."""

    def serve(self) -> None:
        while (host := self.read_head()) is not None:
            body = b"%d %s" % (self.server.server_address[1], host)
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def test_several_upstreams_take_turns_through_parent_config(tmp_path: Path) -> None:
    launcher = require("trafficserver")
    with (upstream(Named) as first, upstream(Named) as second,
          launcher.launch([first, second], 1, tmp_path) as proxy,
          closing(http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)) as conn):
        bodies = []
        for _ in range(4):
            conn.request("GET", "/", headers={"Host": "chaos.example"})
            bodies.append(conn.getresponse().read())
    ports = [int(body.split()[0]) for body in bodies]
    assert ports == [first[1], second[1]] * 2 or ports == [second[1], first[1]] * 2, bodies
    assert all(body.endswith(b" chaos.example") for body in bodies)
    assert (tmp_path / "etc" / "parent.config").read_text().startswith("dest_ip=127.0.0.2 ")
    assert (tmp_path / "var" / "server.lock").exists()  # Traffic Server's state stays in workdir
