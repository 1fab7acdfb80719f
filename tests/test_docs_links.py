"""The documentation (README.md and the pages of docs/) stays inside the repository: every relative link
leads to a file of the repository that exists, and to a heading of it when it names one; no page points
at a path outside the repository (`../shared`, a `..` that climbs out of it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
"""A Markdown link's target: `[text](target)`."""


def prose(page: Path) -> list[str]:
    """The page's lines outside fenced code (whose paths are relative to the file they quote)."""
    lines, fenced = [], False
    for line in page.read_text().splitlines():
        fenced ^= line.startswith("```")
        if not fenced and not line.startswith("```"):
            lines.append(line)
    return lines


def anchors(page: Path) -> set[str]:
    """The anchors a Markdown renderer (GitHub's) gives the page's headings."""
    headings = [match.group(1) for line in prose(page) if (match := re.match(r"#{1,6} (.*)", line))]
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def broken_links(page: Path, root: Path) -> list[str]:
    """The page's relative links that leave `root`, lead to no file, or name a heading the page has not."""
    broken = []
    for link in LINK.findall("\n".join(prose(page))):
        if re.match(r"[a-z]+:", link):  # https:, mailto:: not a path
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target if target else page).resolve()
        if not (path.is_relative_to(root) and path.exists()) or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
            broken.append(link)
    return broken


def climbs(page: Path, root: Path) -> list[str]:
    """The `../` paths of the page's prose that lead out of `root`."""
    return [path for line in prose(page) for path in re.findall(r"(?:\.\./)+[\w./-]*", line)
            if not (page.parent / path).resolve().is_relative_to(root)]


def test_the_readme_and_the_docs_index_list_every_page():
    names = {page.name for page in PAGES[1:]}
    assert {"README.md", "oracle.md", "scenarios.md", "check.md", "proxies.md", "pytest.md", "locust.md",
            "sidecar.md", "deploys.md", "admin-and-journal.md", "development.md", "serve.md"} <= names
    readme, index = PAGES[0].read_text(), (ROOT / "docs" / "README.md").read_text()
    assert all(f"](docs/{name})" in readme and f"- [{name}]({name})" in index for name in names - {"README.md"})


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading_of_the_repository(page):
    assert broken_links(page, ROOT) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_no_page_points_outside_the_repository(page):
    assert "../shared" not in page.read_text()
    assert climbs(page, ROOT) == []


def test_the_checks_catch_a_missing_file_a_missing_heading_and_a_climb(tmp_path):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.md").write_text("# A\n\n## Its part\n")
    page = root / "docs" / "b.md"
    page.write_text("[ok](a.md#its-part) [ok](#b) [gone](c.md) [no heading](a.md#other) [out](../../x.md)\n"
                    "# B\n\nsee ../../shared/notes.md\n\n```yaml\n$schema=../scenario.json\n```\n")
    assert broken_links(page, root) == ["c.md", "a.md#other", "../../x.md"]
    assert climbs(page, root) == ["../../x.md", "../../shared/notes.md"]
