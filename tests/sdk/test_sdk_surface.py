"""The public surface of imagegate_client: declared once in ``__all__``, and that is all."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import imagegate_client
import imagegate_client.errors as errors_module
import pytest

from imagegate.signing import ReplayGuard as ServiceReplayGuard
from imagegate.signing import verify

PUBLIC = {
    "Client", "AsyncClient",
    "Progress", "TaskStatus", "GeneratedImage", "Generation", "Cancellation", "TaskPage",
    "ModelInfo",
    "ImagegateError", "APIError", "AuthenticationError", "PermissionDenied",
    "InsufficientBalance", "NotFound", "Conflict", "InvalidRequest", "RateLimited",
    "ServerError", "APIConnectionError", "TaskFailed", "WaitTimeout",
    "image_data_uri", "verify_webhook", "WebhookVerificationError", "ReplayGuard",
}
METHODS = {"submit", "status", "wait", "generate", "cancel", "list_tasks", "iter_tasks",
           "balance", "models", "download", "close"}


def test_all_is_exactly_the_public_surface_and_every_name_resolves() -> None:
    assert set(imagegate_client.__all__) == PUBLIC
    assert len(imagegate_client.__all__) == len(PUBLIC)
    for name in imagegate_client.__all__:
        assert getattr(imagegate_client, name) is not None


def test_every_error_is_exported_and_derives_from_imagegate_error() -> None:
    for name in errors_module.__all__:
        error = getattr(imagegate_client, name)
        assert issubclass(error, imagegate_client.ImagegateError)
    assert issubclass(imagegate_client.WebhookVerificationError,
                      imagegate_client.ImagegateError)


def test_client_and_async_client_have_the_same_methods_and_signatures() -> None:
    for name in METHODS:
        sync = getattr(imagegate_client.Client, name)
        asynchronous = getattr(imagegate_client.AsyncClient, name)
        assert inspect.signature(sync).parameters == \
            inspect.signature(asynchronous).parameters, name
    assert inspect.signature(imagegate_client.Client.__init__).parameters.keys() == \
        inspect.signature(imagegate_client.AsyncClient.__init__).parameters.keys()


def test_the_service_verifies_webhooks_with_the_client_implementation() -> None:
    assert verify is imagegate_client.verify_webhook
    assert ServiceReplayGuard is imagegate_client.ReplayGuard


def test_the_package_stands_alone_on_httpx_and_msgspec_and_ships_its_types() -> None:
    package = Path(imagegate_client.__file__).parent
    project = tomllib.loads((package.parents[1] / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == ["httpx>=0.27", "msgspec>=0.19"]
    assert (package / "py.typed").is_file()
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""]
                assert not any(n.split(".")[0] == "imagegate" for n in names), module.name


def test_verifying_webhooks_loads_the_standard_library_only() -> None:
    code = ("import sys; from imagegate_client import verify_webhook, ReplayGuard; "
            "print('httpx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_a_misspelt_submit_option_is_refused_before_anything_is_sent() -> None:
    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(500))
    with imagegate_client.Client("http://h", "k", transport=transport) as client, \
            pytest.raises(TypeError, match="aspect_ration"):
        client.submit("a fox", aspect_ration="1:1")  # type: ignore[call-arg]
    assert sent == []
