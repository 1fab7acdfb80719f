"""The documentation's own deploy pattern (docs/deploys.md, "Your own deploy pattern": "3 members,
maxUnavailable 1, 2 s per pod, readiness 1 s late"), run as the page says, through real nginx with the
deploy-safe settings."""

import json
import re
from pathlib import Path

import pytest

from chaos_upstream.proxies import get_launcher, require
from chaos_upstream.proxies.ports import free_port

from test_cli import run

PAGE = Path(__file__).resolve().parents[1] / "docs" / "deploys.md"


def documented_pattern() -> str:
    text = PAGE.read_text()
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "name: three-pods" in b]
    return block


@pytest.mark.proxy
def test_a_pod_that_answers_503_while_starting_shows_through_nginx(tmp_path):
    require("nginx")
    (tmp_path / "three-pods.yaml").write_text(documented_pattern())
    members = [("127.0.0.1", free_port()) for _ in range(3)]
    with get_launcher("nginx:deploy-safe").launch(members, 0.5, tmp_path / "nginx") as proxy:
        result = run("check", "--proxy", proxy.url, "--proxy-timeout", "0.5", "--scenarios", str(tmp_path),
                     "--only", "three-pods", *[arg for host, port in members for arg in ("--upstream", f"{host}:{port}")],
                     "--report-json", str(tmp_path / "report.json"))
    assert result.returncode == 1, result.stdout + result.stderr
    [verdict] = json.loads((tmp_path / "report.json").read_text())["results"]
    observed = verdict["observed"]
    assert observed["requests"] == 171 and observed["errors"] == observed["status 503"] > 0
    assert [r["member"] for r in observed["recovery"]] == [0, 1, 2]
    assert verdict["reason"].endswith("the proxy passed on answers the members gave while not ready")
