"""Packaged for sidecars: flags from the environment, the settings line, --version, --help, `health`,
the Dockerfile, the Kubernetes manifest, the licence and the extras.

No container engine runs here, so the image and the manifest are checked against the command line
they configure: every variable they set is one `serve` reads and accepts, their ports, paths and
probes are the ones the CLI uses, and the commands they run are real (they run here too).
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from chaos_upstream import environment, health
from chaos_upstream.__main__ import main as entry_point
from chaos_upstream.cli import _parser, main
from chaos_upstream.serving import worker_environment
from chaos_upstream.errors import ConfigError
from chaos_upstream.server.upstream import GRACE
from test_cli import ROOT

SAMPLES = {
    "--host": "127.0.0.2", "--port": "8081", "--scenarios": "scenarios", "--default": "upstream-502",
    "--proxy-timeout": "2.5", "--seed": "7", "--mix": "healthy=1,upstream-502=1", "--journal": "/var/log/j.jsonl",
    "--journal-memory": "1MiB", "--journal-max-bytes": "2MiB", "--journal-keep": "3", "--admin-host": "::1",
    "--admin-port": "9091", "--admin-token": "t0ken", "--admin-allow-host": "proxy.internal", "--workers": "2",
    "--grace": "1.5", "--play": "rolling-deploy", "--every": "90s", "--tls": None, "--tls-cert": "/etc/tls/cert.pem",
    "--tls-key": "/etc/tls/key.pem", "--tls-name": "upstream.internal", "--tls-ca": "/run/ca.pem", "--tls-client-ca": "/etc/tls/clients.pem",
}
"""A valid value for every `serve` flag: a flag added without one here fails the first test, which
proves that its variable works as the flag does."""

DATA_PORT = 8080
"""`serve`'s data port when none is given."""


def subparser(name: str, parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or _parser()
    [commands] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return commands.choices[name]


def serve_args(environ: dict[str, str], *argv: str) -> argparse.Namespace:
    return _parser(environ, "serve").parse_args(["serve", *argv])


def test_every_serve_flag_comes_from_its_environment_variable_as_the_flag_would_and_the_flag_wins():
    flags = {variable: action for action in environment.configurable(subparser("serve"))
             for variable in [environment.variable(action)]}
    assert sorted(action.option_strings[0] for action in flags.values()) == sorted(SAMPLES)
    assert "CHAOS_UPSTREAM_WORKER" not in flags  # the hidden, internal --worker
    for name, action in flags.items():
        flag, dest = action.option_strings[0], action.dest
        assert name == "CHAOS_UPSTREAM_" + flag[2:].upper().replace("-", "_")
        given = [flag] if SAMPLES[flag] is None else [flag, SAMPLES[flag]]  # None: a switch, given by itself
        from_flag = getattr(serve_args({}, *given), dest)
        assert str(getattr(serve_args({name: SAMPLES[flag] or "yes"}), dest)) == str(from_flag), name
        other = serve_args({name: "1"} if action.type in (int, float) else {}, *given)
        assert str(getattr(other, dest)) == str(from_flag), f"{flag} must win over {name}"


def test_repeatable_flags_take_a_comma_separated_list_that_a_flag_replaces():
    assert serve_args({"CHAOS_UPSTREAM_PORT": "8081, 8082"}).port == [8081, 8082]
    assert serve_args({"CHAOS_UPSTREAM_PORT": "8081,8082"}, "--port", "9000", "--port", "9001").port == [9000, 9001]
    assert serve_args({"CHAOS_UPSTREAM_SCENARIOS": "a,b"}).scenarios == [Path("a"), Path("b")]


def test_a_switch_takes_yes_no_words_and_refuses_others_naming_its_variable():
    parser = argparse.ArgumentParser()
    parser.add_argument("--verbose-wire", action="store_true", help="a switch")
    for word, value in [("1", True), ("Yes", True), ("true", True), ("0", False), ("no", False), ("FALSE", False)]:
        environment.apply(parser, {"CHAOS_UPSTREAM_VERBOSE_WIRE": word})
        assert parser.parse_args([]).verbose_wire is value
    with pytest.raises(ConfigError, match="CHAOS_UPSTREAM_VERBOSE_WIRE='maybe': give one of 1, true, yes"):
        environment.apply(parser, {"CHAOS_UPSTREAM_VERBOSE_WIRE": "maybe"})


def test_workers_get_the_supervisors_environment_without_serves_variables(monkeypatch):
    """Their settings come whole from the supervisor; CHAOS_UPSTREAM_WORKERS would make each a supervisor."""
    monkeypatch.setenv("CHAOS_UPSTREAM_WORKERS", "4")
    monkeypatch.setenv("CHAOS_UPSTREAM_ADMIN_PORT", "9090")
    monkeypatch.setenv("CHAOS_UPSTREAM_REQUIRE_PROXIES", "1")
    env = worker_environment(serve_args(dict(os.environ)))
    assert "CHAOS_UPSTREAM_WORKERS" not in env and "CHAOS_UPSTREAM_ADMIN_PORT" not in env
    assert env["CHAOS_UPSTREAM_REQUIRE_PROXIES"] == "1" and env["PATH"] == os.environ["PATH"]


def test_version_is_the_installed_distributions(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert (exit.value.code, capsys.readouterr().out) == (0, f"chaos-upstream {metadata.version('chaos-upstream')}\n")


@pytest.mark.parametrize("command", ["serve", "check", "matrix", "validate", "list", "schema", "install-proxies", "health"])
def test_each_commands_help_says_what_it_does_its_defaults_and_its_exit_codes(capsys, command):
    with pytest.raises(SystemExit) as exit:
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert exit.value.code == 0 and "exit codes: 0" in text
    parser = subparser(command)
    assert " ".join(parser.description.split()) in text
    for action in parser._actions:
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
            assert f"(default: {action.default})" in text or "default" in (action.help or ""), action.option_strings


def test_health_on_its_own_is_the_same_command_without_the_rest(capsys):
    with pytest.raises(SystemExit):
        entry_point(["health", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "usage: chaos-upstream health" in text and "(default: 2.0)" in text and health.EXITS in text
    assert entry_point(["health"]) == 2
    assert capsys.readouterr().err == "chaos-upstream: health: give --admin-port (or CHAOS_UPSTREAM_ADMIN_PORT): serve's admin API is where it asks\n"
    assert health.SHARED <= environment.variables(subparser("serve"))


def dockerfile() -> dict[str, list[str]]:
    """Each instruction's arguments, joined over continuation lines, by instruction (in order)."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            found.setdefault(word, []).append(rest.strip())
    return found


def docker_env(instructions: dict[str, list[str]]) -> dict[str, str]:
    return dict(pair.split("=", 1) for env in instructions["ENV"] for pair in env.split())


def test_the_dockerfile_builds_a_non_root_image_whose_ports_settings_and_health_check_are_the_clis():
    image = dockerfile()
    assert image["FROM"] == ["python:3.11-slim"] and any(run.startswith("pip install .") for run in image["RUN"])
    [user] = image["USER"]
    assert user.split(":")[0] not in ("0", "root")
    env = {name: value for name, value in docker_env(image).items() if name.startswith("CHAOS_UPSTREAM_")}
    assert set(env) <= environment.variables(subparser("serve"))
    args = serve_args(env)
    assert args.host == "0.0.0.0" and args.port == [DATA_PORT] and args.admin_host == "127.0.0.1"
    assert sorted(" ".join(image["EXPOSE"]).split()) == sorted([str(DATA_PORT), str(args.admin_port)])
    [healthcheck] = image["HEALTHCHECK"]
    assert healthcheck.endswith('CMD ["chaos-upstream", "health"]')
    assert (json.loads(image["ENTRYPOINT"][0]), json.loads(image["CMD"][0])) == (["chaos-upstream"], ["serve"])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "chaos-upstream" in scripts
    ignored = {line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")}
    for copy in image["COPY"]:
        for source in copy.split()[:-1]:
            assert (ROOT / source).exists() and source not in ignored, source


def test_the_images_command_serves_with_its_settings_printed_and_masked_and_its_health_check_runs():
    """ENTRYPOINT + CMD and the HEALTHCHECK command, run as the image runs them (its ENV, on ports free here)."""
    image = dockerfile()
    scripts = str(Path(sys.executable).parent)
    env = {**os.environ, **docker_env(image), "PATH": scripts + os.pathsep + os.environ["PATH"],
           "CHAOS_UPSTREAM_HOST": "127.0.0.1", "CHAOS_UPSTREAM_PORT": "0", "CHAOS_UPSTREAM_ADMIN_PORT": "0",
           "CHAOS_UPSTREAM_ADMIN_TOKEN": "s3cret"}
    if not shutil.which("chaos-upstream", path=env["PATH"]):
        pytest.skip("the chaos-upstream console script is not installed beside this Python")
    command = json.loads(image["ENTRYPOINT"][0]) + json.loads(image["CMD"][0])
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        settings, listening, admin = (process.stdout.readline().strip() for _ in range(3))
        assert settings.startswith("chaos-upstream settings: --host 127.0.0.1 --port 0 ")
        assert " --admin-token *** " in settings and "s3cret" not in settings
        assert listening.startswith("chaos-upstream listening on http://127.0.0.1:")
        probe = json.loads(image["HEALTHCHECK"][0].split("CMD", 1)[1])
        env["CHAOS_UPSTREAM_ADMIN_PORT"] = admin.rsplit(":", 1)[1]
        for extra, token, status in [([], "s3cret", 0), (["--ready"], "s3cret", 0), ([], "wrong", 1)]:
            checked = subprocess.run([*probe, *extra], env={**env, "CHAOS_UPSTREAM_ADMIN_TOKEN": token},
                                     capture_output=True, text=True, timeout=30)
            assert checked.returncode == status, checked.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        process.stdout.close(), process.stderr.close()


def manifests() -> dict[str, dict]:
    """Every object in deploy/kubernetes/, by kind."""
    objects = [doc for path in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())]
    return {doc["kind"]: doc for doc in objects if doc}


def container_env(container: dict, objects: dict[str, dict]) -> dict[str, str]:
    """The container's environment as the kubelet makes it: Secret keys read, the pod's IP made up,
    `$(VAR)` replaced by an earlier variable."""
    env: dict[str, str] = {}
    for entry in container["env"]:
        if "value" in entry:
            env[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda match: env[match.group(1)], entry["value"])
        elif "secretKeyRef" in entry["valueFrom"]:
            ref = entry["valueFrom"]["secretKeyRef"]
            assert objects["Secret"]["metadata"]["name"] == ref["name"]
            env[entry["name"]] = objects["Secret"]["stringData"][ref["key"]]
        else:
            assert entry["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
            env[entry["name"]] = "10.1.2.3"
    return env


def test_the_kubernetes_sidecar_is_configured_as_the_cli_reads_it():
    objects = manifests()
    assert set(objects) == {"Deployment", "Secret", "ConfigMap", "Service"}
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    containers = {container["name"]: container for container in pod["containers"]}
    sidecar, proxy = containers["chaos-upstream"], containers["proxy"]
    env = container_env(sidecar, objects)
    assert {name for name in env if name.startswith("CHAOS_UPSTREAM_")} <= environment.variables(subparser("serve"))
    args = serve_args(env, *sidecar["args"][1:])
    assert sidecar["args"][0] == "serve" and pod["terminationGracePeriodSeconds"] > args.grace == GRACE
    assert args.admin_token and args.admin_allow_host == ["10.1.2.3"]  # an admin API off loopback needs both
    assert {port["name"]: port["containerPort"] for port in sidecar["ports"]} == {"admin": args.admin_port}
    mounts = {mount["mountPath"]: mount["name"] for mount in sidecar["volumeMounts"]}
    assert str(args.journal.parent) in mounts and {volume["name"] for volume in pod["volumes"]} >= set(mounts.values())
    probes = {kind: sidecar[kind]["exec"]["command"] for kind in ("livenessProbe", "readinessProbe")}
    assert probes == {"livenessProbe": ["chaos-upstream", "health"], "readinessProbe": ["chaos-upstream", "health", "--ready"]}
    probe_parser = argparse.ArgumentParser()
    health.add_arguments(probe_parser)
    environment.apply(probe_parser, env, only=health.SHARED)
    assert probe_parser.parse_args([]).admin_port == args.admin_port and probe_parser.parse_args(["--ready"]).ready
    nginx = objects["ConfigMap"]["data"]["default.conf"]
    assert re.search(r"server (\S+):(\d+);", nginx).groups() == (args.host, str(args.port[0]))
    assert re.search(r"proxy_read_timeout (\d+)s;", nginx).group(1) == f"{args.proxy_timeout:g}"
    assert {volume["name"]: volume.get("configMap", {}).get("name") for volume in pod["volumes"]}["nginx-conf"] == objects["ConfigMap"]["metadata"]["name"]
    assert objects["Service"]["spec"]["ports"][0]["targetPort"] in {port["name"] for port in proxy["ports"]}


def test_the_proxys_configuration_in_the_manifest_is_valid_nginx(tmp_path):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        pytest.skip("nginx is not installed")
    (tmp_path / "default.conf").write_text(manifests()["ConfigMap"]["data"]["default.conf"].replace("listen 80;", "listen 127.0.0.1:1;"))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log; events {{}} http {{ access_log off; include {tmp_path}/default.conf; }}\n"
    )
    checked = subprocess.run([nginx, "-t", "-q", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_the_licence_is_the_mit_one_pyproject_names_and_the_trio_extra_brings_pytest_trio():
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License\n") and "Copyright (c) 2026 the chaos-upstream authors" in licence
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert any(requirement.startswith("pytest-trio") for requirement in project["optional-dependencies"]["trio"])


def test_the_documentation_names_every_command_and_every_option():
    """The README and the pages of docs/ are the manual: a command or an option they never name is one a user
    cannot find."""
    documentation = "\n".join(path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    unnamed = [
        f"{name} {option}" if option else name
        for name, parser in commands.items()
        for option in ["", *(o for a in parser._actions if a.help != argparse.SUPPRESS for o in a.option_strings)]
        if option not in ("-h", "--help") and not any(word in documentation for word in _mentions(name, option))
    ]
    assert unnamed == []


def _mentions(command: str, option: str) -> list[str]:
    """How the documentation may name a command (`serve`, chaos-upstream serve) or one of its options."""
    return [option] if option else [f"`{command}`", f"chaos-upstream {command}"]


def test_ctrl_c_in_a_command_without_a_sigint_handler_is_one_line_and_exit_130(monkeypatch, capsys):
    from chaos_upstream import cli

    def interrupted(argv):
        raise BaseExceptionGroup("as a trio nursery raises it", [KeyboardInterrupt()])

    monkeypatch.setattr(cli, "main", interrupted)
    assert entry_point(["check", "--proxy", "http://127.0.0.1:1", "--upstream", "127.0.0.1:2"]) == 130
    assert capsys.readouterr().err == "chaos-upstream: interrupted\n"
