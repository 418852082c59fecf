"""The client commands of ``imagegate``: they talk to a service by URL with an API key, through
the ``imagegate_client`` SDK, and work against any APIXO-style server (docs/cli.md).

    imagegate generate PROMPT [--image PATH_OR_URL ...] [--ratio R] [--resolution RES]
                       [--format F] [-n N] [-o OUT] [--model M] [--google-search] [--seed S]
                       [--timeout SECONDS] [--no-wait] [--json] [--quiet]
    imagegate tasks list [--state S ...] [--model M] [--limit N] [--cursor C] [--all] [--json]
    imagegate tasks cancel TASK_ID [--model M] [--json]

Each takes --base-url and --api-key (default: IMAGEGATE_BASE_URL, IMAGEGATE_API_KEY). None of
them reads the database or the service's settings; exit statuses are in ``exits``; the
arguments in ``parser``, which ``imagegate.cli`` registers.
"""

from __future__ import annotations
