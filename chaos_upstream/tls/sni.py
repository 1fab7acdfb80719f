"""The SNI naming rule: a server name of the form NAME.chaos names the scenario NAME, so one TLS
port serves a whole catalogue to a proxy that sends a chosen name (nginx `proxy_ssl_name`, HAProxy
`sni`, Envoy `sni`). Pure.
"""

from __future__ import annotations

SUFFIX = ".chaos"
"""Not a public top-level domain: no real host's name ends so, so no real name selects a scenario."""


def scenario_of(server_name: str | None) -> str | None:
    """The scenario a server name names (NAME of NAME.chaos, case-insensitively), else None."""
    if server_name is None:
        return None
    name = server_name.lower()
    if not name.endswith(SUFFIX) or len(name) == len(SUFFIX):
        return None
    return name[: -len(SUFFIX)]
