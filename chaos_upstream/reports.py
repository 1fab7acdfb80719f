"""Check reports as files: JSON (the interface's format), JUnit XML for CI, a self-contained HTML
page, and the matrix as a Markdown table (that of docs/proxies.md).

Pure: each function turns Reports into text. Invariants: every failing or inconclusive verdict
carries its reason into every format, so no one has to open a log to know what the proxy did (and a
verdict that took a second probe says so, with the first one's reason, in every format); every
format lists failures first, then inconclusive verdicts, then passes; every format carries the
date, chaos-upstream's version and the proxy's ("unknown" when it does not say).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from xml.etree import ElementTree

from chaos_upstream.matrix import Run, cell, worst_first
from chaos_upstream.model.scenario import Scenario
from chaos_upstream.verifier.check import VERSION, Report
from chaos_upstream.verifier.judge import FAIL, INCONCLUSIVE
from chaos_upstream.verifier.probe import Result

BYTES_SHOWN = 600
"""Bytes of each response shown in the HTML report: a head and the start of a body."""


def to_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2) + "\n"


def matrix_json(runs: Sequence[Run]) -> str:
    """The interface's matrix report: {"runs": [{"proxy": ..., "version": ..., ...check report...}]},
    with chaos-upstream's version and the date the first proxy's check began (null when none ran)."""
    head = {"chaos_upstream_version": VERSION, "date": _first_stamp([run.report for run in runs if run.report])}
    return json.dumps({**head, "runs": [run.to_json() for run in runs]}, indent=2) + "\n"


def proxy_version(report: Report) -> str:
    return report.proxy_version or "unknown"


def _first_stamp(reports: Sequence[Report]) -> str | None:
    return min((report.stamp for report in reports), default=None)


def to_junit(reports: Sequence[Report]) -> str:
    """One testsuite per proxy, one testcase per scenario; fail -> <failure>, inconclusive -> <skipped>."""
    suites = ElementTree.Element("testsuites", name="chaos-upstream")
    for report in reports:
        counts = report.counts()
        suite = ElementTree.SubElement(
            suites,
            "testsuite",
            name=f"chaos-upstream check {report.proxy}",
            tests=str(len(report.results)),
            failures=str(counts.get(FAIL, 0)),
            skipped=str(counts.get(INCONCLUSIVE, 0)),
            time=f"{report.elapsed:.3f}",
            timestamp=report.date.strftime("%Y-%m-%dT%H:%M:%S"),  # JUnit's: ISO 8601, no zone (this one is UTC)
        )
        properties = ElementTree.SubElement(suite, "properties")
        for name, value in (("chaos-upstream.version", VERSION), ("proxy.version", proxy_version(report)), ("date", report.stamp)):
            ElementTree.SubElement(properties, "property", name=name, value=value)
        for result in report.worst_first():
            _testcase(suite, report, result)
    ElementTree.indent(suites)
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _testcase(suite: ElementTree.Element, report: Report, result: Result) -> None:
    case = ElementTree.SubElement(
        suite, "testcase", classname=f"chaos-upstream.{report.profile}", name=result.scenario.name,
        time=f"{result.elapsed:.3f}",
    )
    if result.verdict == FAIL:
        ElementTree.SubElement(case, "failure", message=result.reason, type="verdict").text = result.explain()
    elif result.verdict == INCONCLUSIVE:
        ElementTree.SubElement(case, "skipped", message=result.reason)
    ElementTree.SubElement(case, "system-out").text = result.explain()


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .35em .6em; border-bottom: 1px solid #ddd; }
th { background: #f4f4f4; }
.pass { color: #176b2c; font-weight: 600; } .fail { color: #b3261e; font-weight: 600; }
.inconclusive { color: #8a6100; font-weight: 600; }
details pre { white-space: pre-wrap; word-break: break-all; background: #f7f7f7; padding: .6em; font-size: 12px; }
.summary span { margin-right: 1.2em; }
"""


def to_html(reports: Sequence[Report], title: str = "chaos-upstream check") -> str:
    """A page a person would rather read than the JSON: one table per proxy, every row's evidence inline."""
    return _page(title, _first_stamp(reports), "\n".join(_section(report, report.proxy) for report in reports))


def matrix_html(scenarios: Sequence[Scenario], runs: Sequence[Run]) -> str:
    """The matrix on top, each cell linking to its row (reason and bytes seen) in the proxy's section below."""
    ran = [run for run in runs if run.report is not None]
    head = "".join(f"<th>{html.escape(run.label)}<br><small>{run.launcher.profile} profile</small></th>" for run in ran)
    rows = "\n".join(
        f"<tr><td><code>{html.escape(scenario.name)}</code></td>"
        f"<td>{html.escape(scenario.expect.text())}</td>"
        + "".join(_matrix_cell(run, scenario.name) for run in ran) + "</tr>"
        for scenario in worst_first(scenarios, ran)
    )
    missing = "".join(f"<li><b>{html.escape(run.name)}</b>: {html.escape(run.status)} ({html.escape(run.problem)})</li>"
                      for run in runs if run.report is None)
    body = (
        f"<table><tr><th>scenario</th><th>expected (RFC)</th>{head}</tr>\n{rows}</table>\n"
        "<p><small>pass* = a pass only under the proxy's own profile (its documented behaviour), not the RFC one. "
        "Each cell links to its reason and the bytes the client saw.</small></p>\n"
        + (f"<ul>{missing}</ul>\n" if missing else "")
        + "\n".join(_section(run.report, run.label, anchor=_anchor(run)) for run in ran)
    )
    return _page("chaos-upstream matrix", _first_stamp([run.report for run in ran if run.report]), body)


def matrix_markdown(scenarios: Sequence[Scenario], runs: Sequence[Run]) -> str:
    """The matrix as a Markdown table, scenarios in name order (so two runs diff cell by cell): a
    row of each proxy's profile and T, then a cell per verdict with what the client saw, left out
    for a plain 200 ("pass", "**fail** (status 500)", "pass* (status 503)")."""
    ran = [run for run in runs if run.report is not None]
    lines = [
        "| scenario | expected (RFC) | " + " | ".join(run.label for run in ran) + " |",
        "|---|---|" + "---|" * len(ran),
        "| *profile, T* | | " + " | ".join(f"*{run.launcher.profile}, {run.report.timing.proxy_timeout:g} s*"
                                           for run in ran if run.report) + " |",
    ]
    for scenario in sorted(scenarios, key=lambda scenario: scenario.name):
        cells = [_markdown_cell(run.result(scenario.name)) for run in ran]
        lines.append(f"| `{scenario.name}` | {scenario.expect.text()} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _markdown_cell(result: Result | None) -> str:
    if result is None:
        return "-"
    verdict = f"**{result.verdict}**" if result.verdict != "pass" else cell(result)
    return verdict if result.seen == "status 200" and result.verdict == "pass" else f"{verdict} ({result.seen})"


def _matrix_cell(run: Run, scenario: str) -> str:
    result = run.result(scenario)
    if result is None:
        return "<td>-</td>"
    return (f"<td><a class={result.verdict} href=#{_anchor(run)}{html.escape(scenario)}>{cell(result)}</a> "
            f"<small>{html.escape(result.seen)}{_twice(result)}</small></td>")


def _twice(result: Result) -> str:
    """A note for a verdict that took a second probe (the first failed only by coming late)."""
    return " (probed twice)" if result.reprobed else ""


def _anchor(run: Run) -> str:
    return html.escape(run.launcher.slug) + "-"


def _page(title: str, stamp: str | None, body: str) -> str:
    when = f", {stamp}" if stamp else ""
    return (
        f"<!doctype html>\n<html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head>\n<body><h1>{html.escape(title)}</h1>\n"
        f"<p class=meta>chaos-upstream {html.escape(VERSION)}{when}</p>\n{body}\n</body></html>\n"
    )


def _section(report: Report, heading: str, anchor: str = "") -> str:
    counts = report.counts()
    summary = "".join(f"<span class={v}>{counts[v]} {v}</span>" for v in ("pass", "fail", "inconclusive") if v in counts)
    rows = "\n".join(_row(result, anchor) for result in report.worst_first())
    return (
        f"<h2>{html.escape(heading)}</h2>\n<p class=summary>{html.escape(report.proxy)} "
        f"(version {html.escape(proxy_version(report))}), profile <b>{report.profile}</b>, "
        f"proxy timeout T = {report.timing.proxy_timeout:g} s, {report.elapsed:.2f} s in all &nbsp; {summary}</p>\n"
        "<table><tr><th>scenario</th><th>expected</th><th>observed</th><th>attempts</th><th>verdict</th>"
        f"<th>reason and evidence</th></tr>\n{rows}</table>{_not_checked(report)}"
    )


def _not_checked(report: Report) -> str:
    items = "".join(f"<li><code>{html.escape(s.scenario)}</code>: {html.escape(s.reason)}</li>" for s in report.skipped)
    return f"\n<p>Not checked:</p><ul>{items}</ul>" if items else ""


def _row(result: Result, anchor: str) -> str:
    observed = result.observed
    data = result.capture.data[:BYTES_SHOWN] if result.capture is not None else b""
    evidence = html.escape(result.explain() + "\n\nbytes the client received:\n" + repr(data))
    return (
        f"<tr id={html.escape(anchor + result.scenario.name)}><td><code>{html.escape(result.scenario.name)}</code></td>"
        f"<td>{html.escape(result.scenario.expect.text(result.profile))}</td>"
        f"<td>{html.escape(result.seen)} <small>({observed['elapsed_s']:.2f} s)</small></td>"
        f"<td>{observed['upstream_attempts']}</td><td class={result.verdict}>{result.verdict}{_twice(result)}</td>"
        f"<td>{html.escape(result.reason)}<details><summary>evidence</summary><pre>{evidence}</pre></details></td></tr>"
    )
