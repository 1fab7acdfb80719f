"""Traefik's two configurations, rendered from `ProxySettings`: the static one (traefik.yaml, entry
point, providers, logs), read once at start, and the dynamic one (dynamic.yaml: routers, services,
middlewares, transports), which the file provider loads after the entry point is already listening.

Invariants of the generated configuration:
- One entry point, `web`, on 127.0.0.1; no API, no dashboard, no metrics, no version check and no
  anonymous usage report.
- The default router (`PathPrefix(`/`)`, priority 1) sends everything to one service holding every
  upstream, round robin (Traefik's `wrr` with equal weights), no health check (Traefik's default),
  with the client's Host header passed on (`passHostHeader`, Traefik's default, written out).
- Each route is a router of its own (`PathPrefix` on its prefix, priority 100, above the default
  router whatever the rules' lengths) to a service holding its single address.
- A last router, on `READY_PATH` only, answers from Traefik's own `ping@internal` service: it comes
  with the others in the dynamic configuration, so a 200 there proves the routers are loaded.  The
  launcher waits for it (see `TraefikLauncher.start`); without it the first requests after the TCP
  port opens get Traefik's 404 for "no router matches".
- Upstream-side timeouts are set in the servers transport every service uses, all `proxy_timeout`:
  `forwardingTimeouts.dialTimeout` (connect), `responseHeaderTimeout` (from the request's last byte
  to the response's head), and `readTimeout`/`writeTimeout` (between two reads from, or two writes
  to, the upstream connection).  The last two are undocumented: Traefik 3.7 added them for its
  Kubernetes ingress-nginx provider and hid them from encoding (`yaml:"-"` in
  pkg/config/dynamic/http_config.go), but the file provider decodes them all the same, and
  without them nothing in Traefik notices an upstream that goes quiet mid-body before it closes.
  Go's transport has no default response timeout at all: without `responseHeaderTimeout` (or
  `readTimeout`) a silent upstream would hang the client forever.  `readTimeout` also ends a pooled
  upstream connection left idle for T (its pending read expires), well before `idleConnTimeout`'s 90 s.
- Under `tls`, every server URL is https:// and the one servers transport says how.  Verified:
  `serverName` (the SNI and the name checked) and the CA as `rootCAs`.  Default: nothing else,
  which is Traefik's own default (`insecureSkipVerify` false) of checking the chain against the
  system's roots and the name against the URL's host, so a private CA is refused.  A client
  certificate is presented either way (`certificates`).  A certificate refused is a 500 (Go's TLS
  error is not one of the network errors Traefik answers 502).
- Under `tls` without `h2` the servers transport has `disableHTTP2: true`: Traefik's default would
  switch to HTTP/2 whenever the upstream's ALPN offers h2 (measured).  Under `h2` the
  server URLs are h2c:// over plain TCP (prior knowledge), and over TLS https:// with HTTP/2 left
  on: Traefik offers ALPN `h2,http/1.1` and has no setting to offer h2 alone, so h2 is certain
  only against an upstream that chooses it (chaos-upstream's `serve --tls` does).
- Client-side timeouts are generous (`respondingTimeouts` read and idle); there is no write
  timeout, which in Go's server is a total deadline on the whole response.
- The access log (Common Log Format plus router, server and duration) goes to stdout; Traefik's
  own log goes to stderr at DEBUG, the only level at which it says why a request failed ("502 Bad
  Gateway error=..."): Traefik writes its log to stdout unless given a file, so it is given
  /proc/self/fd/2, through which it reopens the launcher's error.log for appending (not /dev/stderr,
  which a log rotation would rename), with a size limit of 1 TiB so that it is never rotated.
- Traefik writes no other file: no ACME storage (no certificate resolver), no plugin directory (no
  plugin), nothing under $HOME.
- `deploy-safe` adds the retry middleware (3 attempts) to the default router.  Traefik 3.7 retries
  a request only when its connection failed before a byte of it was written (a refused connect), so
  a POST that reached an upstream is never replayed; with no `status` option, no answer is retried.
  It passes a rolling deploy that fails without it (502s for requests sent to the member down).
"""

from __future__ import annotations

import json
from string import Template

from chaos_upstream.proxies.settings import ProxySettings, UpstreamTls

DYNAMIC = "dynamic.yaml"
"""In workdir: the file provider's configuration (routers, services, middlewares, transport)."""

READY_PATH = "/_chaos-upstream/traefik-ready"
"""Routed to `ping@internal` by the dynamic configuration: 200 once its routers are loaded.
Outside `/_chaos/`, where the routes are, and never sent by a probe."""

ROUTE_PRIORITY = 100
"""Above the default router's 1: Traefik otherwise ranks routers by the length of their rule."""

READY_PRIORITY = 1000
"""Above every route: the readiness path is never proxied."""

RETRY = {"default": "", "deploy-safe": "      middlewares: [retry]\n"}
"""Per variant: the default router's middlewares (none by default)."""

RETRY_MIDDLEWARE = {
    "default": "",
    "deploy-safe": (
        "  middlewares:\n"
        "    retry:\n"
        "      retry:\n"
        "        # Retried only when no byte of the request was written to the upstream (a refused or\n"
        "        # failed connect), whatever the method; no `status`, so an answer is never retried.\n"
        "        attempts: 3  # three servers tried at most: each retry goes to the next in the rotation\n"
    ),
}
"""Per variant: the middleware that makes a member going away invisible, or none."""

STATIC = Template("""\
# Generated by chaos-upstream: Traefik's static configuration, a reverse proxy in front of the
# upstream(s) under test.  Traefik writes no file in $workdir: logs go to stdout/stderr.
global:
  checkNewVersion: false  # no request to Traefik Labs at start
  sendAnonymousUsage: false

entryPoints:
  web:
    address: "$listen"
    transport:
      # Client-side timeouts are generous so that only the upstream side can time out in a test.
      respondingTimeouts:
        readTimeout: ${client_timeout_s}s  # to read the whole request
        idleTimeout: ${client_timeout_s}s  # a kept-alive client connection between requests
        writeTimeout: 0s  # none: in Go's server it is a deadline on the whole response
      lifeCycle:
        graceTimeOut: 0s  # in-flight requests are cut at once on SIGTERM (10 s by default)

providers:
  providersThrottleDuration: 0s  # one file, read once; the default (2 s) also delays the exit by 1 s
  file:
    filename: $dynamic
    watch: false  # read once: the launcher writes it before Traefik starts

ping:
  entryPoint: web
  manualRouting: true  # no /ping router of its own: the dynamic configuration routes $ready_path

log:
  level: DEBUG  # failed requests are logged at DEBUG only ("502 Bad Gateway error=...")
  filePath: /proc/self/fd/2  # stderr: without a file path Traefik logs to stdout
  maxSize: 1048576  # MB: never rotate (renaming /proc/self/fd/2 fails, and the log would be lost)
  noColor: true

accessLog: {}  # every request, in Common Log Format, to stdout
""")

DYNAMIC_TEMPLATE = Template("""\
# Generated by chaos-upstream: Traefik's dynamic configuration (file provider).
http:
  routers:
    ready:  # answered by Traefik itself: a 200 here means these routers are loaded
      rule: "Path(`$ready_path`)"
      priority: $ready_priority
      entryPoints: [web]
      service: ping@internal
    default:
      rule: "PathPrefix(`/`)"
      priority: 1
      entryPoints: [web]
$retry      service: upstreams
$route_routers
  services:
    upstreams:
      loadBalancer:  # round robin (weighted, equal weights); no health check: Traefik's default
        passHostHeader: true  # the client's Host, not the server's address (Traefik's default)
        serversTransport: upstream
        servers:
$servers
$route_services
$middlewares
  serversTransports:
    upstream:
      forwardingTimeouts:
        # The upstream-side timeouts are the proxy_timeout under test:
        dialTimeout: ${timeout_ms}ms  # to establish the TCP connection to an upstream
        responseHeaderTimeout: ${timeout_ms}ms  # from the request's last byte to the response head
        # Undocumented, and hidden from encoding (`yaml:"-"`), but decoded from this file all the
        # same: per-read and per-write deadlines on the upstream connection, without which an
        # upstream that goes quiet mid-body is waited for until it closes.
        readTimeout: ${timeout_ms}ms  # between two reads from the upstream, head and body alike
        writeTimeout: ${timeout_ms}ms  # between two writes of the request to the upstream
        idleConnTimeout: 90s  # Traefik's default; readTimeout ends an idle pooled connection after T
$tls$http1""")


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is a subset of YAML's)."""
    return json.dumps(text)


def _rule_path(prefix: str) -> str:
    """A route prefix as it goes between backquotes in a Traefik rule; one with a backquote is refused."""
    if "`" in prefix:
        raise ValueError(f"traefik cannot be given a route prefix containing a backquote: {prefix!r}")
    return prefix


HTTP1_OVER_TLS = ("      # HTTP/1.1 over TLS too: Go's transport would take h2 when the upstream's ALPN offers it.\n"
                  "      disableHTTP2: true\n")
"""Under `tls` without `h2` only: over plain TCP Traefik speaks HTTP/2 only to an h2c:// URL."""


def _scheme(settings: ProxySettings) -> str:
    """The servers' URL scheme: https under `tls` (HTTP/2 by ALPN under `h2` too: Traefik offers
    h2 and http/1.1, the upstream chooses), else h2c (prior knowledge) under `h2`, else http."""
    return "h2c" if settings.h2 and settings.tls is None else settings.scheme


def _server(address: str, scheme: str) -> str:
    return f"          - url: {_quoted(f'{scheme}://{address}')}"


def _tls(tls: UpstreamTls | None) -> str:
    """The servers transport's TLS fields for `tls` ("" for plain HTTP, or for Traefik's defaults
    with no client certificate)."""
    if tls is None:
        return ""
    lines = []
    if tls.verify:
        lines += ["      # TLS to the upstream, verified (insecureSkipVerify is false by default):",
                  f"      serverName: {_quoted(tls.server_name)}  # the SNI and the name checked",
                  f"      rootCAs: [{_quoted(str(tls.ca))}]  # the only roots trusted"]
    if tls.client_cert:
        lines += ["      certificates:  # presented to an upstream that asks for one (mTLS)",
                  f"      - {{certFile: {_quoted(str(tls.client_cert))}, keyFile: {_quoted(str(tls.client_key))}}}"]
    return "".join(f"{line}\n" for line in lines)


def static(settings: ProxySettings) -> str:
    """traefik.yaml: the entry point on `settings.listen`, the file provider reading DYNAMIC, logs."""
    return STATIC.substitute(
        workdir=settings.workdir, listen=settings.listen, ready_path=READY_PATH,
        dynamic=_quoted(str(settings.workdir / DYNAMIC)), client_timeout_s=settings.client_timeout_s)


def dynamic(settings: ProxySettings) -> str:
    """DYNAMIC's text: the readiness, default and route routers, their services and the transport."""
    return DYNAMIC_TEMPLATE.substitute(
        ready_path=READY_PATH, ready_priority=READY_PRIORITY,
        retry=RETRY[settings.variant], middlewares=RETRY_MIDDLEWARE[settings.variant],
        servers="\n".join(_server(server, _scheme(settings)) for server in settings.servers),
        tls=_tls(settings.tls), http1=HTTP1_OVER_TLS if settings.tls is not None and not settings.h2 else "",
        route_routers="".join(
            f"    route{index}:  # a connection-level scenario's own port\n"
            f"      rule: {_quoted(f'PathPrefix(`{_rule_path(prefix)}`)')}\n"
            f"      priority: {ROUTE_PRIORITY}\n"
            f"      entryPoints: [web]\n"
            f"      service: route{index}\n"
            for index, (prefix, _) in enumerate(settings.routed)),
        route_services="".join(
            f"    route{index}:\n"
            f"      loadBalancer:\n"
            f"        passHostHeader: true\n"
            f"        serversTransport: upstream\n"
            f"        servers:\n{_server(server, _scheme(settings))}\n"
            for index, (_, server) in enumerate(settings.routed)),
        timeout_ms=settings.proxy_timeout_ms)
