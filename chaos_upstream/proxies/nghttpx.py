"""nghttpx (nghttp2's reverse proxy) as the proxy under test, in its ordinary reverse-proxy set-up.

Invariants of the generated configuration (an nghttpx configuration file: one `option=value` per
line, named as the long command-line options are; a `#` comment only alone on its line, from its
first column):
- One cleartext frontend on 127.0.0.1 (`no-tls`: HTTP/1.1, and h2c by prior knowledge or Upgrade);
  requests reach the upstreams over HTTP/1.1 (`proto=http/1.1`), on upstream connections kept idle
  for nghttpx's default `backend-keep-alive-timeout` of 2 s and reused.
- Every upstream is a `backend` with the catch-all pattern (empty, which is "/"): the addresses of
  one pattern form one load-balancing group, whose addresses nghttpx takes in turn (each has the
  default `weight` 1: round robin).  No `fall`, so no address is ever taken out as offline; but
  an address nghttpx could not connect to is set aside for a back-off that grows with each failure
  in a row (about 1 s, then 3 s, ... up to `backend-max-backoff`, 2 min by default), and the
  request is tried on the next address.  nghttpx retries nothing else: once connected, a request
  whose upstream fails is answered 502 or 504 at once, whatever its method.
- Each route is a `backend` of its own whose pattern is the route's prefix: a pattern ending in "/"
  matches its whole subtree (and the prefix without its last "/"), and the longest pattern wins.
- The client's Host is passed on unchanged (nghttpx only rewrites it with `host-rewrite`).  As every
  nghttpx does, it adds `Via: 1.1 nghttpx` both ways and `X-Forwarded-Proto` to requests, replaces
  the upstream's Server header with `Server: nghttpx`, writes header names in its own case
  (`X-Mixed-Case`), and resolves dot-segments in the request path before forwarding it.
- The upstream-side timeouts are `proxy_timeout`: `backend-connect-timeout` to establish the TCP
  connection, `backend-read-timeout` for upstream silence while a response is due or under way
  (re-armed by every read, head or body: an idle timeout, so a slow but steady body passes), and
  `backend-write-timeout` while the request is written.  Frontend timeouts are generous, so in a
  test only the upstream side can time out.
- One process (`single-process`): nghttpx's main process does not catch SIGTERM, so it dies at once
  and leaves its worker process to notice and exit on its own, an orphan of the launcher's session
  that it could not reap.  The worker's code and its single thread (`workers=1`) are the same.
- nghttpx writes no file: no pid file, the access log to /dev/stdout and the error log to
  /dev/stderr, which the launcher captures.  The error log is at level INFO, the only one at which
  nghttpx says why a request failed ("HTTP parser failure: (HPE_INVALID_CHUNK_SIZE) ...",
  "Timeout"); it also logs every connection and header there.  Run as root, nghttpx keeps root (it
  only changes user when `user` is set).  `--conf` is always given, so the package's
  /etc/nghttpx/nghttpx.conf is never read.
- Under `tls`, every `backend` (the catch-all's and each route's) gets `;tls`.  Verified: `;sni=`
  the server name (the SNI and the name checked) and the CA as `cacert` (global: one for every
  backend).  Default: nothing else, which is nghttpx's own default of checking the chain against
  the system's store and the name against the backend's host, so a private CA is refused:
  `upstream_tls` "verifies".  A client certificate (`client-cert-file`, `client-private-key-file`,
  global too) is presented either way.  A certificate refused is a 502.
- Under `h2`, every `backend` has `proto=h2` instead of `proto=http/1.1`: h2c with prior knowledge
  over plain TCP, ALPN `h2` over TLS (with `proto=http/1.1` nghttpx offers ALPN `http/1.1` only).
  Nothing else changes: nghttpx retries no refused or GOAWAY'd stream.
- nghttpx has no configuration-test mode (nghttp2 issue #1071, asked for in 2017).  The check runs
  it with an empty configuration file (`--conf=/dev/null`), then a first frontend on a UNIX socket
  that cannot exist, then the configuration (`--include`): nghttpx parses and processes all of it
  (options and values, backend patterns and catch-all, address resolution, the TLS requirement)
  and only then opens its first listener, whose bind fails; that failure, and no other, means
  accepted.  The check binds no port and writes no file.

nghttpx's reference: `nghttpx --help`, also at https://nghttp2.org/documentation/nghttpx.1.html.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from string import Template

from typing import ClassVar

from chaos_upstream.proxies.launcher import Launcher, UpstreamTlsSupport
from chaos_upstream.proxies.ports import host_port
from chaos_upstream.proxies.settings import ProxySettings, UpstreamTls

CHECK_FRONTEND = "unix:{conf}/check;no-tls"
"""The check's first frontend: a UNIX socket "inside" the configuration file, a regular file, so
that its bind fails with ENOTDIR (a missing directory could be created by someone; this cannot).
The path is relative to workdir, where the check runs: an absolute one could pass the 108 bytes a
UNIX socket path may have, which nghttpx refuses before it reaches the bind."""

CHECK_PASSED = "Failed to bind UNIX domain socket: Not a directory"
"""What nghttpx logs when it reaches that bind: every configuration error stops it before."""

BACKOFF = {
    "default": "",
    "deploy-safe": (
        "# A refused upstream is set aside for 1 ms at most (2 min by default), so a returned one gets\n"
        "# traffic again at once; not 0, with which a request finding every upstream refusing is\n"
        "# retried on them in a loop until nghttpx drops the client's connection with no answer.\n"
        "backend-max-backoff=1ms\n"
    ),
}
"""Per variant: nghttpx's back-off for an upstream it could not connect to, or almost none."""

TEMPLATE = Template("""\
# Generated by chaos-upstream: nghttpx as a reverse proxy in front of the upstream(s) under test.
# Working directory: $workdir.  nghttpx writes no file: logs go to stdout/stderr, no pid file.
frontend=127.0.0.1,$port;no-tls
# One process: the main process of the usual two dies on SIGTERM without waiting for its worker.
single-process=yes
# One worker thread (the default): upstream connection reuse is deterministic.
workers=1
accesslog-file=/dev/stdout
errorlog-file=/dev/stderr
# Why a request failed (parser errors, timeouts, resets) is only logged at INFO.
log-level=INFO
# Combined format, then which upstream answered ("-:-" when none did) and the time taken.
accesslog-format=$$remote_addr - - [$$time_local] "$$request" $$status $$body_bytes_sent "$$http_referer" "$$http_user_agent" $$backend_host:$$backend_port $$request_time

# The upstream-side timeouts are the proxy_timeout under test:
# to establish the TCP connection to an upstream,
backend-connect-timeout=${timeout_ms}ms
# upstream silence while a response is due or under way (re-armed by every read),
backend-read-timeout=${timeout_ms}ms
# upstream silence while the request is being written.
backend-write-timeout=${timeout_ms}ms
# Client-side timeouts are generous so that only the upstream side can time out in a test.
frontend-read-timeout=${client_timeout_s}s
frontend-write-timeout=${client_timeout_s}s
frontend-keep-alive-timeout=${client_timeout_s}s
$backoff$tls
# Every upstream in the catch-all pattern's group: taken in turn, never taken out (no "fall").
$servers$routes""")


def _backend(host: str, port: int, settings: ProxySettings, pattern: str = "") -> str:
    """A `backend` line (host and port apart, an IPv6 literal without brackets) after a comment
    naming the address as `host:port`; `proto=h2` under `h2`, else `proto=http/1.1`; with `;tls`
    (and `;sni=` when verified) under `tls`."""
    tls = settings.tls
    params = "" if tls is None else ";tls" + (f";sni={tls.server_name}" if tls.verify else "")
    proto = "h2" if settings.h2 else "http/1.1"
    return f"# {host_port(host, port)}\nbackend={host},{port};{pattern};proto={proto}{params}\n"


def _tls(tls: UpstreamTls | None) -> str:
    """The global TLS options for the backends ("" for plain HTTP, or for nghttpx's defaults with no
    client certificate)."""
    if tls is None:
        return ""
    lines = []
    if tls.verify:
        lines += ["# TLS to the upstreams, verified against this CA only (the name: each backend's sni=).",
                  f"cacert={tls.ca}"]
    if tls.client_cert:
        lines += ["# Presented to an upstream that asks for one (mTLS):",
                  f"client-cert-file={tls.client_cert}", f"client-private-key-file={tls.client_key}"]
    return "".join(f"{line}\n" for line in lines)


@dataclass(frozen=True)
class NghttpxLauncher(Launcher):
    """nghttpx: checked by processing the configuration up to its first bind, run with `--conf`."""

    name: str = "nghttpx"
    binary: str = "nghttpx"
    version_prefix: str = "nghttp2/"
    version_args: tuple[str, ...] = ("--version",)
    config_name: str = "nghttpx.conf"
    package: str = "nghttp2-proxy"
    variants: tuple[tuple[str, str], ...] = (
        ("deploy-safe", "backend-max-backoff=1ms: an upstream that refused a connection is set aside for 1 ms "
                        "instead of 1 s and more, so a returned upstream gets traffic again at once"),
    )

    upstream_tls: ClassVar[UpstreamTlsSupport] = "verifies"
    upstream_h2: ClassVar[bool] = True

    def render(self, settings: ProxySettings) -> str:
        tls = settings.tls
        return TEMPLATE.substitute(
            workdir=settings.workdir, port=settings.listen_port, tls=_tls(tls),
            servers="".join(_backend(host, port, settings) for host, port in settings.upstreams),
            routes="".join(f"\n# {prefix}: a connection-level scenario's own port\n{_backend(*address, settings, prefix)}"
                           for prefix, address in settings.routes),
            backoff=BACKOFF[settings.variant], timeout_ms=settings.proxy_timeout_ms,
            client_timeout_s=settings.client_timeout_s)

    def check_args(self, conf: Path, settings: ProxySettings) -> list[str]:
        frontend = CHECK_FRONTEND.format(conf=conf.relative_to(settings.workdir))
        return ["--conf=/dev/null", f"--frontend={frontend}", f"--include={conf}"]

    def accepted(self, ran: subprocess.CompletedProcess[str], settings: ProxySettings) -> bool:
        """nghttpx went through the whole configuration to the check's own bind (see the module)."""
        return CHECK_PASSED in ran.stderr

    def run_args(self, conf: Path, settings: ProxySettings) -> list[str]:
        return [f"--conf={conf}"]
