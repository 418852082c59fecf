"""The documentation states what the code does."""

from __future__ import annotations

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
