from __future__ import annotations

import subprocess
import sys

import imagegate


def test_the_public_surface_is_declared_and_importable() -> None:
    assert sorted(imagegate.__all__) == ["ReplayGuard", "WebhookVerificationError",
                                         "__version__", "verify"]
    for name in imagegate.__all__:
        assert getattr(imagegate, name) is not None


def test_importing_the_package_pulls_in_no_server_dependency() -> None:
    code = ("import sys, imagegate; "
            "print(sorted(m for m in ('starlette', 'granian', 'httpx', 'PIL') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
