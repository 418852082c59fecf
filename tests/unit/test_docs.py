"""The documentation states what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from imagegate.config import reference_markdown

ROOT = Path(__file__).parents[2]


def test_configuration_reference_is_current() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert reference_markdown() in doc, "regenerate with: imagegate config reference"


def test_readme_quick_start_names_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "scripts/serve" in readme and "scripts/test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test" in ci


def _contract_sections() -> dict[str, str]:
    """Section number -> its heading's anchor, from docs/contract.md."""
    text = (ROOT / "docs" / "contract.md").read_text()
    sections = {}
    for number, title in re.findall(r"^## (\d+)\. (.+)$", text, re.MULTILINE):
        anchor = re.sub(r"[^\w\- ]", "", f"{number}. {title}".lower()).replace(" ", "-")
        sections[number] = anchor
    return sections


def test_every_pointer_into_the_contract_names_a_section_it_has() -> None:
    sections = _contract_sections()
    assert len(sections) == 15
    code = [p for d in ("src", "tests") for p in (ROOT / d).rglob("*.py")]
    for path in code:
        for number in re.findall(r"docs/contract\.md §(\d+)", path.read_text()):
            assert number in sections, f"{path}: docs/contract.md §{number}"
    for path in [*(ROOT / "docs").glob("*.md"), ROOT / "README.md"]:
        text = path.read_text()
        for number, anchor in re.findall(r"\[contract §(\d+)\]\((?:docs/)?contract\.md#([^)]+)\)",
                                         text):
            assert sections.get(number) == anchor, f"{path}: contract §{number} -> #{anchor}"


def test_nothing_points_at_files_the_repository_does_not_have() -> None:
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "docs").glob("*.md"),
                 ROOT / "README.md"]:
        text = path.read_text()
        for name in ("CONTRACT.md", "ARCHITECTURE.md", "STYLE.md", "ROADMAP.md"):
            assert name not in text, f"{path} points at {name}"


def test_the_license_the_package_declares_is_there() -> None:
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text()
    assert "Apache License" in (ROOT / "LICENSE").read_text()
