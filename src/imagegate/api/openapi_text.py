"""The prose of the OpenAPI document: its introduction, the sandbox's directives and the
table of failCodes (from ``imagegate.errors``), and the tags that group its operations."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from imagegate.errors import FailCode

__all__ = ["codes_text", "info", "tags"]

Json = dict[str, Any]

_FAIL_MEANINGS: dict[str, str] = {
    FailCode.PROMPT_INVALID: "the prompt was rejected as invalid",
    FailCode.SENSITIVE_CONTENT: "prompt, reference image or output violated the safety policy "
                                "(never failed over to another route)",
    FailCode.IMAGE_FORMAT_INCORRECT: "a reference image could not be fetched or decoded, or is "
                                     "too large; failMsg names the URL and why",
    FailCode.MISSING_PARAMETER: "a route needed a parameter the request lacked",
    FailCode.RATE_LIMITED: "every eligible route stayed rate limited (retried with backoff first)",
    FailCode.TIMEOUT: "the task ran past its deadline (retried within the deadline first)",
    FailCode.UNKNOWN: "anything else; the exact string, with a space (retried once first)",
}


def _version() -> str:
    try:
        return version("imagegate")
    except PackageNotFoundError:
        return "0.0.0"


def info() -> Json:
    return {
        "title": "imagegate",
        "version": _version(),
        "summary": "Self-hostable image-generation task service, wire-compatible with APIXO.",
        "description": "\n\n".join([_intro_text(), _sandbox_text(), _fail_code_table()]),
        "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
    }


def _intro_text() -> str:
    return (
        "imagegate serves the APIXO task API for image models: submit a task, poll its status, "
        "download the results. A program written against APIXO's Nano Banana 2 API works "
        "unchanged after changing only its base URL and API key; everything marked "
        "*extension* is additive.\n\n"
        "Every JSON response, success or error, is the envelope "
        '`{"code": <int>, "message": <string>, "data": <any>}`; `code` repeats the HTTP '
        'status and `message` is `"success"` on success. A request error has the real non-2xx '
        'HTTP status and `data` `{"error": "...", "field": "..."}`. A task that failed is not '
        "a request error: its status read is HTTP 200 with `state` `failed`.\n\n"
        "Poll 10-20 s after submitting, then every 10 s, or (extension) let the server "
        "wait: `Prefer: wait=N` on a submit, `wait=N` on a status read. Result URLs need no "
        "authentication and answer 410 Gone once they expire."
    )


def _sandbox_text() -> str:
    return (
        "## Sandbox directives\n\n"
        "The `sandbox` route (the service's test mode, used until a real route is configured) "
        "renders a deterministic picture of the prompt at the exact size and format asked for. "
        "Directives inside the prompt steer it; they are removed before drawing:\n\n"
        "| directive | effect |\n|---|---|\n"
        "| `[sandbox:fail=CODE]` | every attempt fails with failCode `CODE` |\n"
        "| `[sandbox:fail=CODE:N]` | the first `N` attempts fail with `CODE`, later ones "
        "succeed (shows the service's retries) |\n"
        "| `[sandbox:delay=SECONDS]` | answer after `SECONDS` (0 to 600) instead of the "
        "configured delay |\n\n"
        f"`CODE` is one of the failCodes below (case-insensitive): {codes_text()}. An unknown "
        "code, a bad count or delay, or an unknown directive fails the task with "
        f"`{FailCode.PROMPT_INVALID}`."
    )


def codes_text() -> str:
    return ", ".join(f"`{code}`" for code in FailCode.ALL)


def _fail_code_table() -> str:
    lines = [
        "## Failure codes",
        "",
        "A failed task carries one of these `failCode` values and a `failMsg` for a person. "
        "Treat `failCode` as an open string.",
        "",
        "| failCode | meaning | retried by the service first |",
        "|---|---|---|",
    ]
    for code in FailCode.ALL:
        retried = "yes" if code in FailCode.RETRYABLE else "no"
        lines.append(f"| `{code}` | {_FAIL_MEANINGS.get(code, '')} | {retried} |")
    lines.append(f"| `{FailCode.CANCELED}` | extension: the client cancelled the task "
                 "(cancelTask); it is refunded | no |")
    return "\n".join(lines)


def tags() -> list[Json]:
    return [
        {"name": "tasks", "description": "Submit and read image-generation tasks."},
        {"name": "account", "description": "The API key's account."},
        {"name": "models", "description": "The models the API key may use, with their limits "
                                          "and prices."},
        {"name": "results", "description": "Result downloads (the URLs in resultJson)."},
        {"name": "webhooks", "description": "Callback delivery log, redelivery, test events "
                                            "and signing secrets."},
        {"name": "operations", "description": "Health, readiness and this document."},
    ]
