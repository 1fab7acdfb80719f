"""Every report, in every format, shows failures first and says when, with which chaos-upstream and
through which proxy version it was made."""

import dataclasses
import html
import json
from datetime import datetime, timezone
from importlib import metadata
from xml.etree import ElementTree

from chaos_upstream import reports
from chaos_upstream.commands.check import verdict_table
from chaos_upstream.commands.matrix import matrix_table
from chaos_upstream.matrix import RAN, Run
from chaos_upstream.model.durations import Timing
from chaos_upstream.proxies import get_launcher
from chaos_upstream.proxies.nginx import NginxLauncher
from chaos_upstream.verifier.check import Report, left_out
from chaos_upstream.verifier.classify import Observation
from chaos_upstream.verifier.judge import Verdict
from chaos_upstream.verifier.probe import Result

from conftest import CATALOGUE

VERDICTS = {"healthy": "pass", "bad-status-line": "fail", "never-respond": "inconclusive", "upstream-502": "pass",
            "http09-response": "fail"}
"""Scenario -> verdict, in the order the scenarios were checked."""
WORST_FIRST = ["bad-status-line", "http09-response", "never-respond", "healthy", "upstream-502"]
DATE = datetime(2025, 5, 1, 9, 30, 7, 250000, tzinfo=timezone.utc)
VERSION = metadata.version("chaos-upstream")


def result(name: str, verdict: str) -> Result:
    judgement = Verdict(verdict, "status", "a 200", f"{name} was {verdict}")
    return Result(CATALOGUE.get(name), f"{name}-0", "GET", "rfc", judgement, Observation("status", 200), None, ())


def report(proxy_version: str | None = "nginx/1.22.1") -> Report:
    results = [result(name, verdict) for name, verdict in VERDICTS.items()]
    skipped = [left_out(CATALOGUE.get("rolling-deploy"))]
    return Report("http://127.0.0.1:8080", "rfc", Timing(0.5), results, 1.0, skipped, proxy_version, DATE)


def test_results_stay_in_scenario_order_and_every_report_lists_them_failures_first():
    checked = report()
    assert [r.scenario.name for r in checked.results] == list(VERDICTS)
    assert [r["scenario"] for r in json.loads(reports.to_json(checked))["results"]] == WORST_FIRST
    suite = ElementTree.fromstring(reports.to_junit([checked]).encode()).find("testsuite")
    assert [case.get("name") for case in suite.iter("testcase")] == WORST_FIRST
    page = reports.to_html([checked])
    assert sorted(WORST_FIRST, key=lambda name: page.index(f"<tr id={name}>")) == WORST_FIRST
    assert list(verdict_table(checked).columns[0].cells) == WORST_FIRST


def test_every_report_carries_the_date_and_both_versions():
    checked = report()
    document = json.loads(reports.to_json(checked))
    assert (document["date"], document["chaos_upstream_version"], document["proxy_version"]) == (
        "2025-05-01T09:30:07Z", VERSION, "nginx/1.22.1")
    suite = ElementTree.fromstring(reports.to_junit([checked]).encode()).find("testsuite")
    assert suite.get("timestamp") == "2025-05-01T09:30:07"
    assert {p.get("name"): p.get("value") for p in suite.iter("property")} == {
        "chaos-upstream.version": VERSION, "proxy.version": "nginx/1.22.1", "date": "2025-05-01T09:30:07Z"}
    page = reports.to_html([checked])
    assert f"<p class=meta>chaos-upstream {VERSION}, 2025-05-01T09:30:07Z</p>" in page
    assert "(version nginx/1.22.1)" in page
    table = verdict_table(checked)
    assert "nginx/1.22.1" in str(table.title) and str(table.caption) == f"chaos-upstream {VERSION}, 2025-05-01T09:30:07Z"


def test_a_proxy_that_does_not_say_its_version_is_unknown_in_every_format():
    silent = report(proxy_version=None)
    assert json.loads(reports.to_json(silent))["proxy_version"] is None
    assert '<property name="proxy.version" value="unknown" />' in reports.to_junit([silent])
    assert "(version unknown)" in reports.to_html([silent])
    assert "version unknown" in str(verdict_table(silent).title)


def test_the_matrix_puts_the_scenarios_a_proxy_failed_first_and_says_when_and_with_what():
    ran = Run(NginxLauncher(), RAN, "1.22.1", report())
    rows = list(matrix_table([CATALOGUE.get(name) for name in VERDICTS], [ran], 0.5).columns[0].cells)
    assert rows == WORST_FIRST
    page = reports.matrix_html([CATALOGUE.get(name) for name in VERDICTS], [ran])
    assert sorted(WORST_FIRST, key=lambda name: page.index(f"<td><code>{name}</code></td><td>")) == WORST_FIRST
    document = json.loads(reports.matrix_json([ran]))
    assert (document["date"], document["chaos_upstream_version"]) == ("2025-05-01T09:30:07Z", VERSION)
    [run] = document["runs"]
    assert (run["proxy"], run["version"], run["date"]) == ("nginx", "1.22.1", "2025-05-01T09:30:07Z")
    variant = Run(get_launcher("nginx:deploy-safe"), RAN, "1.22.1", report())
    assert json.loads(reports.matrix_json([variant]))["runs"][0]["proxy"] == "nginx:deploy-safe"


def test_the_matrix_in_markdown_is_the_readmes_table_in_name_order():
    runs = [Run(NginxLauncher(), RAN, "1.22.1", report()), Run(get_launcher("nginx:deploy-safe"), RAN, "1.22.1", report())]
    table = reports.matrix_markdown([CATALOGUE.get(name) for name in VERDICTS], runs).splitlines()
    assert table[0] == "| scenario | expected (RFC) | nginx 1.22.1 | nginx:deploy-safe 1.22.1 |"
    assert table[2] == "| *profile, T* | | *rfc, 0.5 s* | *rfc, 0.5 s* |"
    assert [line.split("`")[1] for line in table[3:]] == sorted(VERDICTS)
    cells = {line.split("`")[1]: line.split(" | ")[2] for line in table[3:]}
    for name, result in ((r.scenario.name, r) for r in runs[0].report.results):
        shown = cells[name]
        assert shown.startswith(result.verdict if result.verdict == "pass" else f"**{result.verdict}**"), shown
        assert (shown == "pass") == (result.verdict == "pass" and result.seen == "status 200"), shown


def test_the_scenarios_left_out_are_listed_with_the_option_that_would_include_them():
    need = ("needs a fleet of at least 2 upstreams, and --upstream gave 1: pass --upstream HOST:PORT 2 times, each an "
            "address the proxy forwards to")
    assert json.loads(reports.to_json(report()))["skipped"] == [{"scenario": "rolling-deploy", "reason": need}]
    assert f"<li><code>rolling-deploy</code>: {need}</li>" in reports.to_html([report()])


def test_a_verdict_that_took_a_second_probe_says_so_with_the_first_ones_reason_in_every_format():
    first = result("never-respond", "fail")
    first = dataclasses.replace(first, judgement=Verdict("fail", "status", "a 504", "expected a 504 within 1.60 s (1.6T); it came "
                                                         "after 1.77 s", late_only=True))
    second = dataclasses.replace(result("never-respond", "pass"), probe_id="never-respond-1", first=first)
    checked = Report("http://127.0.0.1:8080", "rfc", Timing(0.5), [second, result("healthy", "pass")], 1.0, date=DATE)
    reason = "first probe: expected a 504 within 1.60 s (1.6T); it came after 1.77 s; probed again alone: never-respond was pass"
    document = json.loads(reports.to_json(checked))
    [twice, once] = document["results"]
    assert (twice["verdict"], twice["reason"], twice["reprobed"], twice["first_probe"]["probe"]) == ("pass", reason, True, "never-respond-0")
    assert once["reprobed"] is False and "first_probe" not in once
    case = ElementTree.fromstring(reports.to_junit([checked]).encode()).find("testsuite/testcase[@name='never-respond']")
    assert f"  verdict:      {reason}" in case.find("system-out").text
    assert "  first probe:  never-respond-0: " in case.find("system-out").text
    page = reports.to_html([checked])
    assert "<td class=pass>pass (probed twice)</td>" in page and "<td class=pass>pass</td>" in page
    assert html.escape(reason) in page
    matrix = reports.matrix_html([CATALOGUE.get("never-respond")], [Run(NginxLauncher(), RAN, "1.22.1", checked)])
    assert "<small>status 200 (probed twice)</small>" in matrix
