"""Who may call the admin API: the Host, Origin and token checks made before any call is routed.

Invariants:
- no web page can drive the API: every call must carry exactly one `Host` (or an absolute-form
  target, whose authority stands for it) that names this API (the bound address, a loopback name,
  or one given with `--admin-allow-host`) and no foreign `Origin`;
- with a token configured, every call without `Authorization: Bearer TOKEN` gets a 401, and the
  token is compared in constant time;
- a value that is not a well-formed Host or Origin names nothing, and is refused.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Set
from urllib.parse import urlsplit

import h11

from chaos_upstream.server.admin_http import Reply

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
"""Names that always name the API: a page cannot get a browser to send them as its own Host."""

WILDCARDS = ("0.0.0.0", "::")
"""Bound addresses that are never a valid Host: a browser reaches 0.0.0.0 as loopback, which is how
pages have driven local services."""


def refusal(request: h11.Request, authority: str | None, hosts: Set[str], token: str | None) -> Reply | None:
    """403 for a Host (or the authority of an absolute-form target, which stands for it) or an
    Origin that is not one of `hosts`, 401 without the token; None: go on."""
    fields = header_values(request, b"host")
    named = fields[0] if authority is None and len(fields) == 1 else authority
    if len(fields) != 1 or named is None or not _ours(named, hosts):
        shown = named[:100] if len(fields) == 1 and named is not None else f"{len(fields)} Host fields"
        return Reply.error(403, f"Host {shown!r} does not name this admin API: "
                           "give the name with --admin-allow-host NAME if it should")
    for origin in header_values(request, b"origin"):
        if not _ours(_origin_host(origin), hosts):
            return Reply.error(403, f"Origin {origin[:100]!r} refused: web pages may not call the admin API "
                               "(--admin-allow-host NAME allows one whose host is NAME)")
    if token is not None and not _authorised(request, token):
        return Reply.error(401, "missing or wrong bearer token")
    return None


def _ours(host: str, hosts: Set[str]) -> bool:
    """Whether a Host value (name, or name:port) names this API."""
    host = host.strip().lower()
    return bool(host) and (host in hosts or _host_name(host) in hosts)


def _authorised(request: h11.Request, token: str) -> bool:
    given = dict(request.headers).get(b"authorization", b"")
    return hmac.compare_digest(given, b"Bearer " + token.encode())


def header_values(request: h11.Request, name: bytes) -> list[str]:
    """The values of every header field `name` (lower case) of the request."""
    return [value.decode("latin-1") for field, value in request.headers if field == name]


def allowed_name(name: str) -> str:
    """An allowed name (`NAME` or `NAME:PORT`) as a Host value spells it: lower case, an IPv6 address in brackets."""
    name = name.strip().lower()
    return f"[{name}]" if name.count(":") > 1 and not name.startswith("[") else name


HOST_VALUE = re.compile(r"(\[[0-9a-f:.]+\]|[^\[\]:@/?#\s]+)(?::[0-9]*)?")
"""A Host value (RFC 9110 §7.2): a name or an IP literal in brackets, then an optional port."""


def _host_name(host: str) -> str:
    """The name part of a Host value, lower case: `[::1]:80` -> `[::1]`, `Example:80` -> `example`;
    "" for anything that is not a Host value (`[::1]evil`, `localhost:evil`), which is refused."""
    match = HOST_VALUE.fullmatch(host.strip().lower())
    return match[1] if match else ""


def split_target(target: str) -> tuple[str | None, str, str]:
    """(authority, path, query) of a request target. Origin-form (`/path?query`) has no authority,
    and is split at its `?` alone, so that `//name/path` is a path like any other; absolute-form
    (`http://name/path?query`) names the host, which then stands for the Host field (RFC 9112
    §3.2.2). ValueError for any other form."""
    if target.startswith("/"):
        path, _, query = target.partition("?")
        return None, path, query
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{target[:100]!r} is neither /PATH nor http://HOST/PATH")
    return parts.netloc, parts.path or "/", parts.query


def _origin_host(origin: str) -> str:
    """The host[:port] of an Origin value; "" for `null` or anything unparseable, which is refused."""
    try:
        return urlsplit(origin.strip()).netloc if origin.strip() != "null" else ""
    except ValueError:
        return ""
