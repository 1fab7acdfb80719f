"""The admin API's `/metrics`: Prometheus's text format, from a snapshot of the running totals.

Invariants: a scrape reads one `Stats` snapshot, taken when the scrape came, and the members'
listening flags of the same moment; nothing is counted here, so a scrape changes no total.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from chaos_upstream.server.upstream import Stats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Prometheus's text exposition format, version 0.0.4: what every scraper reads."""


def exposition(stats: Stats, listening: list[bool]) -> bytes:
    """The metrics of `stats` and of each member's listening flag, in Prometheus's text format."""
    registry = CollectorRegistry()
    registry.register(Collector(stats, listening))
    return generate_latest(registry)


class Collector:
    """Prometheus metrics from a snapshot of the running totals, taken at scrape time."""

    def __init__(self, stats: Stats, listening: list[bool]) -> None:
        self.stats = stats
        self.listening = listening

    def collect(self) -> Any:
        stats = self.stats
        requests = CounterMetricFamily("chaos_upstream_requests", "Requests handled, by scenario.", labels=["scenario"])
        for scenario, count in sorted(stats.requests.items()):
            requests.add_metric([scenario], count)
        endings = CounterMetricFamily(
            "chaos_upstream_request_endings", "Requests by scenario and how they ended.", labels=["scenario", "ended"]
        )
        for (scenario, ended), count in sorted(stats.endings.items()):
            endings.add_metric([scenario, ended], count)
        yield requests
        yield endings
        yield CounterMetricFamily("chaos_upstream_connections", "Connections accepted.", value=stats.connections)
        yield GaugeMetricFamily("chaos_upstream_connections_open", "Connections open now.", value=stats.open)
        yield CounterMetricFamily("chaos_upstream_bad_requests", "Requests refused as unparseable.", value=stats.bad_requests)
        yield CounterMetricFamily("chaos_upstream_received_bytes", "Bytes read from closed connections.", value=stats.bytes_in)
        yield CounterMetricFamily("chaos_upstream_sent_bytes", "Bytes written to closed connections.", value=stats.bytes_out)
        yield CounterMetricFamily("chaos_upstream_journal_dropped", "Journal records dropped from memory to keep "
                                  "it within --journal-memory (the file keeps them).", value=stats.journal_dropped)
        yield GaugeMetricFamily("chaos_upstream_journal_memory_bytes", "Bytes the journal's records in memory take "
                                "now, estimated.", value=stats.journal_bytes)
        yield CounterMetricFamily("chaos_upstream_journal_unwritten", "Journal records the file could not take "
                                  "(a full or failing disk).", value=stats.journal_unwritten)
        members = GaugeMetricFamily("chaos_upstream_member_listening", "1 while fleet member K listens, 0 while a "
                                    "timeline holds it down.", labels=["member"])
        for index, listening in enumerate(self.listening):
            members.add_metric([str(index)], int(listening))
        yield members
