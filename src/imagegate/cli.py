"""The ``imagegate`` command line.

    imagegate serve [--data-dir DIR] [--host H] [--port P] [--config FILE]
    imagegate api [--host H] [--port P]
    imagegate worker [--models M,..] [--routes R,..] [--concurrency N] [--metrics-port P]
    imagegate sweeper [--metrics-port P]
    imagegate migrate
    imagegate keys create --credit USD [--name N] [--json]
    imagegate keys list [--json]
    imagegate keys revoke KEY_ID
    imagegate accounts credit KEY_ID_OR_ACCOUNT USD
    imagegate tasks show TASK_ID [--json]
    imagegate routes check [--json]
    imagegate webhooks secret KEY_ID_OR_ACCOUNT [--rotate [--overlap SECONDS]]
    imagegate config reference

    imagegate generate PROMPT [--image PATH_OR_URL ...] [-n N] [-o OUT] ...
    imagegate tasks list [--state S] [--model M] [--limit N] [--all]
    imagegate tasks cancel TASK_ID
    imagegate mcp [--http PORT]

The last four are client commands (imagegate.client_cli, imagegate.mcp): they talk to a
service by URL with an API key (--base-url, --api-key or IMAGEGATE_BASE_URL,
IMAGEGATE_API_KEY), through the imagegate_client SDK, and read no database or settings. The
others work on this machine's data directory or database.

Every operator command takes --data-dir and --config, before the command or after its action.
Only ``serve`` and ``migrate`` create a data directory or database; the others say when there
is none. Bad arguments exit with status 2 and a message that names what is wrong; operational
errors exit with status 1 (the client commands' exit statuses are in client_cli/exits.py). A
command without its action prints that command's help.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shlex
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from imagegate import accounts, serving
from imagegate.availability import problem_line
from imagegate.bootstrap import check_routes, open_store
from imagegate.client_cli.parser import CommandParser, parse, register_generate, register_tasks
from imagegate.clock import SystemClock
from imagegate.config import Settings, reference_markdown
from imagegate.errors import ConfigError, ImagegateError, RequestError
from imagegate.mcp.command import register_mcp
from imagegate.money import MAX_MOVE_MICROS, format_usd, micros_to_usd, usd_to_micros
from imagegate.signing import new_secret
from imagegate.store.base import LedgerEntry, Store, WebhookSecret
from imagegate.tasks import Task, TaskState, result_url

T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
    if not hasattr(args, "run"):  # a command without its action: that command's help
        print(getattr(args, "usage", parser.format_help)(), file=sys.stderr, end="")
        return 2
    if getattr(args, "client", False):  # talks to a service by URL: no settings, no database
        return int(args.run(args))
    try:
        settings = Settings.load(args.config, data_dir=args.data_dir,
                                 host=getattr(args, "host", None), port=getattr(args, "port", None),
                                 metrics_port=getattr(args, "metrics_port", None))
        result: int = args.run(args, settings)
        return result
    except ConfigError as exc:
        print(f"imagegate: configuration error: {exc}", file=sys.stderr)
        return 2
    except (RequestError, ImagegateError) as exc:
        print(f"imagegate: {exc}", file=sys.stderr)
        return 1


METRICS_PORT_HELP = "serve /metrics on this port (default: metrics_port; 0: none)"


def build_parser() -> argparse.ArgumentParser:
    # --data-dir and --config go before the command or after its action: the later wins.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", default=argparse.SUPPRESS,
                        help="data directory (default ./imagegate-data)")
    common.add_argument("--config", default=argparse.SUPPRESS, help="TOML configuration file")
    parser: argparse.ArgumentParser = CommandParser(
        prog="imagegate", description="Image-generation task service, wire-compatible with "
        "APIXO's task API.", epilog="generate, tasks list, tasks cancel and mcp talk to a "
        "service by URL (--base-url/--api-key or IMAGEGATE_BASE_URL/IMAGEGATE_API_KEY); the other "
        "commands work on this machine's data directory or database (--data-dir, --config).")
    parser.add_argument("--data-dir", help="data directory (default ./imagegate-data)")
    parser.add_argument("--config", help="TOML configuration file")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = sub.add_parser("serve", parents=[common], help="run the service (all in one)")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="listen port (default 8000)")
    serve.set_defaults(run=cmd_serve)

    api = sub.add_parser("api", parents=[common], help="serve the API alone, no workers "
                         "(several may run behind a load balancer)")
    api.add_argument("--host", help="listen address (default 127.0.0.1)")
    api.add_argument("--port", type=_port, help="listen port (default 8000)")
    api.set_defaults(run=cmd_api)

    worker = sub.add_parser("worker", parents=[common], help="claim and run tasks")
    worker.add_argument("--models", type=_models, help="comma-separated model ids to claim "
                        "(default: every model one of its routes serves)")
    worker.add_argument("--routes", type=_names, help="comma-separated routes to run "
                        "(default: every route in use)")
    worker.add_argument("--concurrency", type=_count, help="tasks at once (default: "
                        "worker_concurrency)")
    worker.add_argument("--metrics-port", type=_port, help=METRICS_PORT_HELP)
    worker.set_defaults(run=cmd_worker)

    sweeper = sub.add_parser("sweeper", parents=[common], help="requeue expired leases, fail "
                             "overdue queued tasks, delete expired results and old task "
                             "records, deliver callbacks")
    sweeper.add_argument("--metrics-port", type=_port, help=METRICS_PORT_HELP)
    sweeper.set_defaults(run=cmd_sweeper)

    migrate = sub.add_parser("migrate", parents=[common], help="create the data directory and "
                             "database, or bring the database's schema up to date")
    migrate.set_defaults(run=cmd_migrate)

    register_generate(sub)
    register_mcp(sub)

    keys = _group(sub, "keys", "manage API keys")
    create = keys.add_parser("create", parents=[common], help="create a key on a new account")
    create.add_argument("--credit", type=_credit, default=0, metavar="USD",
                        help="starting balance in USD, e.g. 10 or 2.50")
    create.add_argument("--name", default="", help="a label for the key")
    create.add_argument("--account", help="add the key to this existing account instead")
    create.add_argument("--models", type=_models, help="comma-separated model ids this key may "
                        "use (default: every model)")
    create.add_argument("--rate", type=_positive, help="submits per second (default: "
                        "limits_submit_rate)")
    create.add_argument("--max-concurrent", type=int, help="unfinished tasks at once "
                        "(default: limits_max_concurrent_tasks)")
    create.add_argument("--json", action="store_true", help="print a JSON object")
    create.set_defaults(run=cmd_keys_create)
    listing = keys.add_parser("list", parents=[common], help="list keys")
    listing.add_argument("--json", action="store_true", help="print JSON lines")
    listing.set_defaults(run=cmd_keys_list)
    revoke = keys.add_parser("revoke", parents=[common], help="revoke a key")
    revoke.add_argument("key_id", help="the key's id, as `keys list` shows it")
    revoke.set_defaults(run=cmd_keys_revoke)

    accts = _group(sub, "accounts", "manage accounts")
    credit = accts.add_parser("credit", parents=[common], help="add funds to an account")
    credit.add_argument("ref", help="a key id or an account id")
    credit.add_argument("usd", type=_usd, help="amount in USD (negative to debit)")
    credit.set_defaults(run=cmd_accounts_credit)

    hooks = _group(sub, "webhooks", "callback signing")
    secret = hooks.add_parser("secret", parents=[common], help="show an account's signing "
                              "secrets (creating the first), or rotate them")
    secret.add_argument("ref", help="a key id or an account id")
    secret.add_argument("--rotate", action="store_true", help="make a new secret; the old ones "
                        "keep signing until the overlap ends")
    secret.add_argument("--overlap", type=float, metavar="SECONDS", help="with --rotate: how "
                        "long old secrets keep signing (default callbacks_rotation_overlap_"
                        "seconds)")
    secret.set_defaults(run=cmd_webhooks_secret)

    tasks = _group(sub, "tasks", "tasks: show reads the database; list and cancel ask a "
                   "service by URL")
    show = tasks.add_parser("show", parents=[common], help="a task as operators see it: state, "
                            "money, result URLs, every route attempt and note (reads the "
                            "database: --data-dir, --config)")
    show.add_argument("task_id")
    show.add_argument("--json", action="store_true", help="print a JSON object")
    show.set_defaults(run=cmd_tasks_show)
    register_tasks(tasks)

    routes = _group(sub, "routes", "routes")
    check = routes.add_parser("check", parents=[common], help="ask each route's upstream "
                              "whether its model is served; exit 1 unless every route in use "
                              "is confirmed available")
    check.add_argument("--json", action="store_true", help="print JSON lines")
    check.set_defaults(run=cmd_routes_check)

    config = _group(sub, "config", "configuration")
    ref = config.add_parser("reference", parents=[common], help="print every setting")
    ref.set_defaults(run=lambda a, s: print(reference_markdown()) or 0)
    return parser


def _group(sub: Any, name: str, help_text: str) -> Any:
    """A command made of actions (``keys create``); alone, it prints its own help."""
    command = sub.add_parser(name, help=help_text)
    command.set_defaults(usage=command.format_help)
    return command.add_subparsers(metavar="ACTION")


def _usd(text: str) -> int:
    """A USD amount one command may move: at most MAX_MOVE_MICROS either way."""
    try:
        micros = usd_to_micros(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a USD amount such as 10 or 2.50") \
            from exc
    if abs(micros) > MAX_MOVE_MICROS:
        raise argparse.ArgumentTypeError(f"{text!r} is more than one command may move "
                                         "(1,000,000,000 USD)")
    return micros


def _credit(text: str) -> int:
    micros = _usd(text)
    if micros < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a starting credit cannot be negative")
    return micros


def _models(text: str) -> tuple[str, ...]:
    models = tuple(m.strip() for m in text.split(",") if m.strip())
    if not models:
        raise argparse.ArgumentTypeError("--models needs at least one model id")
    return models


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one name")
    return names


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)")
    return int(text)


def with_store(settings: Settings, fn: Callable[[Store], Awaitable[T]], *,
               create: bool = False) -> T:
    """Run ``fn`` on the store. Only ``create`` (serve, migrate) makes a data directory or a
    database that is not there; every other command says so and stops."""
    if not create:
        _require_database(settings)

    async def run() -> T:
        store = open_store(settings)
        try:
            await store.migrate()
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _require_database(settings: Settings) -> None:
    if not settings.database.startswith("sqlite:///"):
        return
    path = Path(settings.database.removeprefix("sqlite:///"))
    if path.exists():
        return
    where = f"--data-dir {shlex.quote(settings.data_dir)}"
    raise RequestError(f"no imagegate database at {path}: start the service there once "
                       f"(imagegate serve {where}) or create it (imagegate migrate {where})")


# Commands -----------------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    with_store(settings, lambda store: asyncio.sleep(0), create=True)
    print(f"database ready: {settings.database}")
    return 0


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    unknown = [m for m in args.models or () if m not in settings.models]
    if unknown:
        raise RequestError(f"unknown model {unknown[0]!r}; the catalogue has "
                           f"{', '.join(settings.models)}")
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise RequestError("--max-concurrent must be at least 1")
    new = with_store(settings, lambda store: accounts.create_key(
        store, SystemClock(), credit_micros=args.credit, name=args.name,
        account_id=args.account, models=args.models, submit_rate=args.rate,
        max_concurrent_tasks=args.max_concurrent))
    if args.json:
        print(json.dumps({"key": new.plain, "keyId": new.key.id, "accountId": new.account.id,
                          "name": new.key.name,
                          "balanceUsd": new.account.balance_micros / 1_000_000}))
        return 0
    print(f"key id {new.key.id}, account {new.account.id}, balance "
          f"{format_usd(new.account.balance_micros)} (the key is shown only once)")
    print(new.plain)
    return 0


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    async def rows(store: Store) -> list[dict[str, Any]]:
        out = []
        for key in await store.list_keys():
            account = await store.get_account(key.account_id)
            balance = account.balance_micros if account else 0
            out.append({"keyId": key.id, "prefix": key.prefix, "name": key.name,
                        "accountId": key.account_id, "created": _iso(key.created_ms),
                        "revoked": _iso(key.revoked_ms) if key.revoked_ms else None,
                        "balanceUsd": micros_to_usd(balance), "balance": format_usd(balance)})
        return out

    found = with_store(settings, rows)
    if args.json:
        for row in found:
            print(json.dumps(row))
        return 0
    if not found:
        print("no keys yet: imagegate keys create --credit 10", file=sys.stderr)
        return 0
    print(f"{'KEY ID':<14}{'PREFIX':<16}{'ACCOUNT':<19}{'BALANCE':>12}  {'STATE':<30}NAME")
    for row in found:
        state = f"revoked {row['revoked']}" if row["revoked"] else "active"
        print(f"{row['keyId']:<14}{row['prefix'] + '...':<16}{row['accountId']:<19}"
              f"{row['balance']:>12}  {state:<30}{row['name']}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    async def revoke(store: Store) -> bool:
        if await store.get_key(args.key_id) is None:
            raise RequestError(f"no key with id {args.key_id!r} (see imagegate keys list)")
        return await store.revoke_key(args.key_id, SystemClock().now_ms())

    done = with_store(settings, revoke)
    print(f"revoked {args.key_id}" if done else f"{args.key_id} was already revoked")
    return 0


def cmd_accounts_credit(args: argparse.Namespace, settings: Settings) -> int:
    async def credit(store: Store) -> tuple[str, int]:
        account = await accounts.resolve_account(store, args.ref)
        note = "operator credit" if args.usd >= 0 else "operator debit"
        balance = await store.credit(account.id, args.usd, SystemClock().now_ms(), note)
        return account.id, balance

    account_id, balance = with_store(settings, credit)
    print(f"account {account_id}: balance {format_usd(balance)}")
    return 0


def cmd_webhooks_secret(args: argparse.Namespace, settings: Settings) -> int:
    overlap = settings.callbacks_rotation_overlap_seconds if args.overlap is None \
        else args.overlap
    if not 0 <= overlap <= 30 * 86400:
        raise RequestError("--overlap must be 0 to 2592000 seconds (30 days)")

    async def run(store: Store) -> list[WebhookSecret]:
        account = await accounts.resolve_account(store, args.ref)
        now = SystemClock().now_ms()
        if args.rotate:
            return await store.rotate_webhook_secret(account.id, new_secret(), now,
                                                     int(overlap * 1000))
        return await store.webhook_secrets(account.id, now, create=new_secret())

    for live in with_store(settings, run):
        until = f"  (signs until {_iso(live.expires_ms)})" if live.expires_ms else ""
        print(f"{live.secret}{until}")
    return 0


def cmd_tasks_show(args: argparse.Namespace, settings: Settings) -> int:
    async def load(store: Store) -> Task:
        task = await store.get_task(args.task_id)
        if task is None:
            raise RequestError(_missing_task(args.task_id, await store.task_ledger(args.task_id),
                                             settings))
        return task

    task = with_store(settings, load)
    view = operator_view(task, settings.base_url)
    if args.json:
        print(json.dumps(view))
        return 0
    for name in ("taskId", "model", "state", "stage", "attempt", "account", "key",
                 "price", "charge", "created", "completed", "failCode", "failMsg"):
        if view.get(name) is not None:
            print(f"{name:>10}: {view[name]}")
    for url in view["resultUrls"]:
        print(f"{'result':>10}: {url}")
    for a in view["routeAttempts"]:
        model = f" ({a['upstreamModel']})" if a["upstreamModel"] else ""
        print(f"   attempt {a['attempt']}: {a['route']}{model} -> {a['outcome']} in "
              f"{a['durationMs']} ms {a['detail']}".rstrip())
    for note in view["notes"]:
        print(f"      note: {note}")
    return 0


def _missing_task(task_id: str, lines: list[LedgerEntry], settings: Settings) -> str:
    """Why there is no task ``task_id``: never one, or its record was pruned (the ledger
    still names it)."""
    if not lines:
        return f"no task with id {task_id!r}"
    money = ", ".join(f"{e.kind} {'-' if e.amount_micros < 0 else ''}"
                      f"{format_usd(abs(e.amount_micros))}" for e in lines)
    return (f"task {task_id!r} was pruned: its record was deleted after the record retention "
            f"(record_retention_days, {settings.record_retention_days:g} here); the ledger "
            f"still names it: account {lines[0].account_id}, {money}")


def cmd_routes_check(args: argparse.Namespace, settings: Settings) -> int:
    """One line per route in use: available, UNAVAILABLE (with what to change) or UNKNOWN."""
    checks = asyncio.run(check_routes(settings))
    for name, check in checks.items():
        state = {True: "available", False: "UNAVAILABLE", None: "UNKNOWN"}[check.available]
        detail = problem_line(settings.routes[name], check) if check.available is False \
            else check.detail
        if args.json:
            print(json.dumps({"route": name, "state": state.lower(), "detail": detail}))
        else:
            print(f"{name:<24} {state:<12} {detail}")
    return 0 if all(c.available for c in checks.values()) else 1


def operator_view(task: Task, base_url: str) -> dict[str, Any]:
    """A task as operators see it; ``state`` in the API's words (stage says queued or running)."""
    urls = [result_url(base_url, task, r) for r in task.results] \
        if task.state is TaskState.SUCCEEDED else []
    return {"taskId": task.id, "model": task.model, "state": task.state.wire,
            "stage": task.stage, "attempt": task.attempt, "account": task.account_id,
            "key": task.key_id, "price": format_usd(task.price_micros),
            "charge": task.charge_state, "created": _iso(task.created_ms),
            "completed": _iso(task.complete_ms) if task.complete_ms else None,
            "cancelRequested": (_iso(task.cancel_requested_ms)
                                if task.cancel_requested_ms is not None else None),
            "failCode": task.fail_code, "failMsg": task.fail_msg, "resultUrls": urls,
            "routeAttempts": [a.to_json() for a in task.route_attempts],
            "notes": list(task.notes)}


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from imagegate.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    lock = serving.lock_data_dir(Path(settings.data_dir)) if settings.lock_data_dir else None
    try:
        serving.check_port_free(settings.host, settings.port)
        with_store(settings, lambda store: serving.first_start(store, settings), create=True)
        serving.run(settings, args.config)
    finally:
        if lock is not None:
            os.close(lock)
    return 0


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    from imagegate.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    serving.check_port_free(settings.host, settings.port)
    serving.run(settings, args.config, serving.API_APP)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from imagegate.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(serving.run_loops(settings, "worker", work=True, sweep=False, deliver=False,
                                  models=args.models, route_names=args.routes,
                                  concurrency=args.concurrency))
    return 0


def cmd_sweeper(args: argparse.Namespace, settings: Settings) -> int:
    from imagegate.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(serving.run_loops(settings, "sweeper", work=False, sweep=True, deliver=True))
    return 0


def _iso(ms: int | None) -> str:
    return datetime.fromtimestamp((ms or 0) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


if __name__ == "__main__":
    sys.exit(main())
