"""The documentation's tables say what the code does: the catalogue table (docs/scenarios.md) names
every built-in scenario with its description and the profiles that override it; the table of real
proxies (docs/proxies.md) has a column for every launcher and a row for every scenario; the variants
paragraph (docs/check.md) names every proxy with a deploy-safe variant."""

from __future__ import annotations

import re
from pathlib import Path

from chaos_upstream.proxies import LAUNCHERS

from conftest import CATALOGUE

DOCS = Path(__file__).resolve().parents[1] / "docs"


def section(page: str, title: str) -> str:
    """The section of docs/PAGE under the heading `title` (`# ` or `## `), up to the next one of its level."""
    text = (DOCS / page).read_text()
    level = "# " if text.startswith(f"# {title}\n") else "## "
    start = 0 if level == "# " else text.index(f"\n## {title}\n")
    end = text.find(f"\n{level}", start + 1)
    return text[start : end if end != -1 else len(text)]


def rows(text: str) -> dict[str, list[str]]:
    """Table rows whose first cell is a `name`, by that name, split into cells."""
    return {match.group(1): [cell.strip() for cell in match.group(0).strip("|").split(" | ")]
            for match in re.finditer(r"^\| `([a-z0-9-]+)` \|.*\|$", text, re.M)}


def test_the_catalogue_table_has_each_scenario_with_its_description_and_profiles() -> None:
    table = rows(section("scenarios.md", "The catalogue"))
    assert sorted(table) == sorted(scenario.name for scenario in CATALOGUE)
    for scenario in CATALOGUE:
        name, _, description, _, profiles = table[scenario.name]
        assert description == scenario.description, name
        assert sorted(part.split(":")[0].strip() for part in profiles.split(";") if part.strip()) == \
            sorted(scenario.expect.profiles), name


def test_the_table_of_real_proxies_has_a_column_per_launcher_and_a_row_per_scenario() -> None:
    text = section("proxies.md", "Real proxies, as measured")
    header = next(line for line in text.splitlines() if line.startswith("| scenario | expected (RFC) |"))
    columns = [cell.strip() for cell in header.strip("|").split(" | ")][2:]
    assert [column.split(" ")[0] for column in columns] == list(LAUNCHERS)
    assert all(re.fullmatch(r"[a-z-]+ \d+(\.\d+)+", column) for column in columns), columns
    table = rows(text.split(header, 1)[1].split("\n\n", 1)[0])
    assert sorted(table) == sorted(scenario.name for scenario in CATALOGUE if scenario.tls is None and not scenario.http2_only)  # TLS, HTTP/2: their own tables
    assert {len(cells) for cells in table.values()} == {2 + len(LAUNCHERS)}


def test_the_variants_paragraph_names_every_proxy_with_a_deploy_safe_variant() -> None:
    paragraph = (DOCS / "check.md").read_text().split("**Variants.** `NAME:deploy-safe` (for ", 1)[1].split(")", 1)[0]
    named = {"nginx": "nginx", "HAProxy": "haproxy", "Traffic Server": "trafficserver", "Envoy": "envoy",
             "Traefik": "traefik", "both Caddys": "caddy", "nghttpx": "nghttpx"}
    said = {named[word.strip()] for word in " ".join(paragraph.split()).replace(" and ", ", ").split(",")}
    products = {launcher.name.split("-")[0] for launcher in LAUNCHERS.values()
                if dict(launcher.variants).get("deploy-safe")}
    assert said == products
    assert all(dict(LAUNCHERS[name].variants).get("deploy-safe") for name in ("caddy", "caddy-debian"))


def test_the_http2_pages_name_every_http2_scenario_and_every_one_without_an_equivalent() -> None:
    from chaos_upstream.plan.h2_planner import no_equivalent

    http2 = sorted(scenario.name for scenario in CATALOGUE if scenario.http2_only)
    readme = (DOCS.parent / "README.md").read_text()
    assert sorted(rows(readme.split("## Quick start: HTTP/2 upstreams", 1)[1].split("\n## ", 1)[0])) == http2
    assert sorted(rows(section("http2.md", "The HTTP/2 catalogue"))) == http2
    table = section("http2.md", "Scenarios of HTTP/1.1 over HTTP/2")
    named = {name for line in table.splitlines() if line.startswith("| `") for name in re.findall(r"`([a-z0-9-]+)`", line.split(" | ")[0])}
    assert named == {scenario.name for scenario in CATALOGUE if no_equivalent(scenario)}
