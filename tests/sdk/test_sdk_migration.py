"""docs/migrating-from-apixo.md: its Python examples run, unchanged but for the base URL and the
key, against the fake APIXO and against an imagegate process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fakes.apixo_server import apixo_server
from serverproc import Server

pytestmark = pytest.mark.slow
GUIDE = Path(__file__).parents[2] / "docs" / "migrating-from-apixo.md"
MARKER = "<!-- run by tests/sdk/test_sdk_migration.py -->"


def examples() -> list[str]:
    """The Python blocks the guide marks as run by this test."""
    return re.findall(re.escape(MARKER) + r"\n```python\n(.*?)```", GUIDE.read_text(),
                      re.DOTALL)


def pointed_at(code: str, base_url: str, api_key: str) -> str:
    """``code`` with only its BASE_URL and API_KEY lines changed."""
    code, urls = re.subn(r'^BASE_URL = .*$', f'BASE_URL = "{base_url}"', code, flags=re.M)
    code, keys = re.subn(r'^API_KEY = .*$', f'API_KEY = "{api_key}"', code, flags=re.M)
    assert urls == keys == 1
    return code


def test_the_guide_marks_the_client_and_the_plain_http_examples() -> None:
    found = examples()
    assert len(found) == 2
    assert "from imagegate_client import Client" in found[0] and "import httpx" in found[1]


def test_the_guide_runs_against_apixo_and_imagegate(server: Server, tmp_path: Path) -> None:
    key = server.new_key("1")
    with apixo_server() as apixo:
        targets = {"apixo": (apixo.base_url + "/api/v1", apixo.api_key),
                   "imagegate": (server.base_url + "/api/v1", key)}
        runs = {}
        for number, code in enumerate(examples()):
            for name, (base_url, api_key) in targets.items():
                where = tmp_path / f"{name}-{number}"
                where.mkdir()
                script = where / "example.py"
                script.write_text(pointed_at(code, base_url, api_key))
                env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEGATE_")}
                # The examples poll every 10 s against APIXO: run them all at once.
                runs[where] = subprocess.Popen(
                    [sys.executable, str(script)], cwd=where, env=env, text=True,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        outputs = {where: proc.communicate(timeout=90)[0] for where, proc in runs.items()}
        assert len(apixo.task_ids) == 2
    for where, proc in runs.items():
        assert proc.returncode == 0, f"{where.name}:\n{outputs[where]}"
        assert "saved" in outputs[where]
        pictures = sorted(p.name for p in where.glob("*.png"))
        assert pictures, f"{where.name} saved no image"
        assert all((where / p).read_bytes().startswith(b"\x89PNG") for p in pictures)
