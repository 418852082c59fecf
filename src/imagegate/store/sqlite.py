"""The embedded store: SQLite in WAL mode.

One writer thread owns the only writing connection and commits the transactions queued for it
in groups (``sqlite_writer.py``), so writes never contend inside the process and many submits
share one fsync (``BEGIN IMMEDIATE`` plus a busy timeout handles other processes, such as the
CLI). Readers use their own connections on a small thread pool; under WAL they never wait for
the writer. ``synchronous=FULL``: a task is on disk before its taskId is returned.

A database that cannot be written or read (a full disk, an I/O error, a lock held past the busy
timeout) raises ``StoreUnavailable``: nothing of that transaction was kept. After a failed write
``ping`` writes (and deletes) a scratch row, so readiness follows the disk: not ready until a
write succeeds again.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from imagegate.errors import PaymentRequired, StoreUnavailable, TooManyRequests, Unauthorized
from imagegate.money import MAX_BALANCE_MICROS, ChargeState, LedgerKind
from imagegate.store import rows
from imagegate.store.base import (
    Account,
    ApiKey,
    Delivery,
    DeliveryAttempt,
    Finish,
    LedgerEntry,
    NewDelivery,
    WebhookSecret,
)
from imagegate.store.schema import MIGRATIONS
from imagegate.store.sqlite_writer import GroupCommitWriter
from imagegate.tasks import RouteAttempt, Task, TaskState

T = TypeVar("T")
Conn = sqlite3.Connection
_PROBE_BYTES = 16 * 1024  # more than a page: the probe needs room to grow, as a submit does

class SqliteStore:
    def __init__(self, path: str | Path, readers: int = 4) -> None:
        self._path = str(path)
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-reader")
        self._local = threading.local()
        self._conns: list[Conn] = []
        self._conns_lock = threading.Lock()
        self._writer = GroupCommitWriter(self._conn)
        self._write_trouble: str | None = None  # why the last write failed, until one works

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return cls(path)

    # Plumbing ---------------------------------------------------------------------------------

    def _conn(self) -> Conn:
        conn: Conn | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False,
                                   timeout=30.0)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    async def _write(self, fn: Callable[[Conn], T]) -> T:
        try:
            result = await self._writer.run(fn)
        except sqlite3.IntegrityError:
            raise  # a broken rule of the schema: a bug, not the disk
        except sqlite3.DatabaseError as exc:
            self._write_trouble = str(exc)
            raise _unavailable("written", exc) from exc
        self._write_trouble = None
        return result

    async def _read(self, fn: Callable[[Conn], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._readers, lambda: fn(self._conn()))
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:
            raise _unavailable("read", exc) from exc

    async def migrate(self) -> None:
        def run(conn: Conn) -> None:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                         "(version INTEGER PRIMARY KEY, applied_ms BIGINT NOT NULL)")
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in MIGRATIONS:
                if version not in done:
                    for statement in filter(str.strip, sql.split(";")):
                        conn.execute(statement)
                    conn.execute("INSERT INTO schema_migrations VALUES (?, strftime('%s')*1000)",
                                 (version,))

        await self._write(run)

    async def close(self) -> None:
        def close_all() -> None:
            with self._conns_lock:
                for conn in self._conns:
                    conn.close()
                self._conns.clear()

        self._writer.close()
        self._readers.shutdown(wait=True)
        close_all()

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers, and, after a failed write,
        takes a write again."""
        await self._read(lambda c: c.execute("SELECT 1").fetchone())
        if self._write_trouble is not None:
            await self._write(_probe)

    # Accounts, keys, ledger -------------------------------------------------------------------

    async def create_account(self, account_id: str, name: str, now_ms: int) -> Account:
        await self._write(lambda c: c.execute(
            "INSERT INTO accounts (id, name, balance_micros, created_ms) VALUES (?, ?, 0, ?)",
            (account_id, name, now_ms)))
        return Account(account_id, name, 0, now_ms)

    async def get_account(self, account_id: str) -> Account | None:
        row = await self._read(lambda c: c.execute(
            "SELECT * FROM accounts WHERE id = ?", (account_id,)).fetchone())
        return rows.account(row) if row else None

    async def count_accounts(self) -> int:
        row = await self._read(lambda c: c.execute("SELECT COUNT(*) FROM accounts").fetchone())
        return int(row[0])

    async def credit(self, account_id: str, micros: int, now_ms: int, note: str) -> int:
        def run(c: Conn) -> int:
            cur = c.execute("UPDATE accounts SET balance_micros = balance_micros + ? "
                            "WHERE id = ? AND balance_micros + ? BETWEEN 0 AND ?",
                            (micros, account_id, micros, MAX_BALANCE_MICROS))
            if cur.rowcount != 1:
                raise PaymentRequired("the account does not exist, or its balance would go "
                                      "below zero or above 1,000,000,000,000 USD")
            return _ledger(c, account_id, LedgerKind.CREDIT, micros, now_ms, None, note)

        return await self._write(run)

    async def ledger(self, account_id: str) -> list[LedgerEntry]:
        found = await self._read(lambda c: c.execute(
            "SELECT * FROM ledger WHERE account_id = ? ORDER BY id", (account_id,)).fetchall())
        return [rows.ledger_entry(r) for r in found]

    async def create_key(self, key: ApiKey, key_hash: str) -> None:
        await self._write(lambda c: c.execute(
            "INSERT INTO api_keys (id, account_id, key_hash, name, prefix, created_ms, "
            "submit_rate, submit_burst, max_concurrent_tasks, models) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key.id, key.account_id, key_hash, key.name, key.prefix, key.created_ms,
             key.submit_rate, key.submit_burst, key.max_concurrent_tasks,
             rows.dump_models(key.models))))

    async def key_by_hash(self, key_hash: str) -> ApiKey | None:
        row = await self._read(lambda c: c.execute(
            "SELECT * FROM api_keys WHERE key_hash = ?", (key_hash,)).fetchone())
        return rows.api_key(row) if row else None

    async def get_key(self, key_id: str) -> ApiKey | None:
        row = await self._read(lambda c: c.execute(
            "SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone())
        return rows.api_key(row) if row else None

    async def list_keys(self) -> list[ApiKey]:
        found = await self._read(lambda c: c.execute(
            "SELECT * FROM api_keys ORDER BY created_ms, id").fetchall())
        return [rows.api_key(r) for r in found]

    async def revoke_key(self, key_id: str, now_ms: int) -> bool:
        cur = await self._write(lambda c: c.execute(
            "UPDATE api_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL",
            (now_ms, key_id)))
        return cur.rowcount == 1

    # Tasks ------------------------------------------------------------------------------------

    async def insert_task(self, task: Task, max_unfinished: int) -> None:
        def run(c: Conn) -> None:
            taken = c.execute("UPDATE api_keys SET unfinished_tasks = unfinished_tasks + 1 "
                              "WHERE id = ? AND unfinished_tasks < ?",
                              (task.key_id, max_unfinished))
            if taken.rowcount != 1:
                raise _over_limit(c, task.key_id)
            cur = c.execute("UPDATE accounts SET balance_micros = balance_micros - ? "
                            "WHERE id = ? AND balance_micros >= ?",
                            (task.price_micros, task.account_id, task.price_micros))
            if cur.rowcount != 1:
                raise PaymentRequired(f"the balance cannot pay for this task "
                                      f"(${task.price_micros / 1e6:.6f})")
            c.execute(rows.INSERT_TASK, rows.task_params(task))
            _ledger(c, task.account_id, LedgerKind.HOLD, -task.price_micros, task.created_ms,
                    task.id, "")

        await self._write(run)

    async def get_task(self, task_id: str) -> Task | None:
        row = await self._read(lambda c: c.execute(
            "SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone())
        return rows.task(row) if row else None

    async def claim_tasks(self, worker_id: str, now_ms: int, lease_ms: int, limit: int,
                          models: Sequence[str] | None = None) -> list[Task]:
        model_filter = ""
        params: list[Any] = [now_ms + lease_ms, worker_id, now_ms, now_ms]
        if models is not None:
            model_filter = f"AND model IN ({','.join('?' * len(models))})"
            params.extend(models)
        params.append(limit)
        sql = ("UPDATE tasks SET state = 'running', stage = 'running', attempt = attempt + 1, "
               "lease_until_ms = ?, worker_id = ?, started_ms = COALESCE(started_ms, ?) "
               "WHERE id IN (SELECT id FROM tasks WHERE state = 'queued' AND not_before_ms <= ? "
               f"{model_filter} ORDER BY created_ms LIMIT ?) RETURNING *")
        found = await self._write(lambda c: c.execute(sql, params).fetchall())
        return sorted((rows.task(r) for r in found), key=lambda t: t.created_ms)

    async def renew_lease(self, task_id: str, attempt: int, lease_until_ms: int,
                          stage: str | None = None) -> bool:
        cur = await self._write(lambda c: c.execute(
            "UPDATE tasks SET lease_until_ms = ?, stage = COALESCE(?, stage) "
            "WHERE id = ? AND attempt = ? AND state = 'running'",
            (lease_until_ms, stage, task_id, attempt)))
        return cur.rowcount == 1

    async def finish_task(self, task_id: str, attempt: int, finish: Finish,
                          delivery: NewDelivery | None) -> bool:
        def run(c: Conn) -> bool:
            cur = c.execute(rows.FINISH_TASK, rows.finish_params(task_id, attempt, finish))
            if cur.rowcount != 1:
                return False
            _move_money(c, task_id, finish)
            c.execute("UPDATE api_keys SET unfinished_tasks = unfinished_tasks - 1 "
                      "WHERE id = (SELECT key_id FROM tasks WHERE id = ?)", (task_id,))
            if delivery is not None:
                c.execute(rows.INSERT_DELIVERY, rows.delivery_params(delivery))
            return True

        return await self._write(run)

    async def retry_later(self, task_id: str, attempt: int, not_before_ms: int,
                          route_attempts: tuple[RouteAttempt, ...], note: str, *,
                          lease_expired_before_ms: int | None = None) -> bool:
        cur = await self._write(lambda c: c.execute(
            "UPDATE tasks SET state = 'queued', stage = 'retrying', lease_until_ms = NULL, "
            "worker_id = NULL, not_before_ms = ?, attempts_json = ?, "
            "notes_json = json_insert(notes_json, '$[#]', ?) "
            "WHERE id = ? AND attempt = ? AND state = 'running' "
            "AND (? IS NULL OR lease_until_ms < ?)",
            (not_before_ms, rows.dump_attempts(route_attempts), note, task_id, attempt,
             lease_expired_before_ms, lease_expired_before_ms)))
        return cur.rowcount == 1

    async def expired_leases(self, now_ms: int, limit: int) -> list[Task]:
        found = await self._read(lambda c: c.execute(
            "SELECT * FROM tasks WHERE state = 'running' AND lease_until_ms < ? "
            "ORDER BY lease_until_ms LIMIT ?", (now_ms, limit)).fetchall())
        return [rows.task(r) for r in found]

    async def expired_results(self, now_ms: int, limit: int) -> list[Task]:
        found = await self._read(lambda c: c.execute(
            "SELECT * FROM tasks WHERE results_deleted = 0 AND expire_ms < ? "
            "ORDER BY expire_ms LIMIT ?", (now_ms, limit)).fetchall())
        return [rows.task(r) for r in found]

    async def mark_results_deleted(self, task_id: str) -> None:
        await self._write(lambda c: c.execute(
            "UPDATE tasks SET results_deleted = 1 WHERE id = ?", (task_id,)))

    # Deliveries -------------------------------------------------------------------------------

    async def claim_deliveries(self, now_ms: int, lease_ms: int, limit: int) -> list[Delivery]:
        found = await self._write(lambda c: c.execute(
            "UPDATE deliveries SET lease_until_ms = ? WHERE id IN (SELECT id FROM deliveries "
            "WHERE state = 'pending' AND next_attempt_ms <= ? "
            "AND (lease_until_ms IS NULL OR lease_until_ms < ?) "
            "ORDER BY next_attempt_ms LIMIT ?) RETURNING *",
            (now_ms + lease_ms, now_ms, now_ms, limit)).fetchall())
        return [rows.delivery(r) for r in found]

    async def record_delivery_attempt(self, attempt: DeliveryAttempt, state: str,
                                      next_attempt_ms: int) -> bool:
        def run(c: Conn) -> bool:
            # Fenced on the attempt count: a dispatcher whose lease ran out records nothing.
            cur = c.execute("UPDATE deliveries SET state = ?, attempts = ?, next_attempt_ms = ?, "
                            "lease_until_ms = NULL, last_status = ?, last_error = ? "
                            "WHERE id = ? AND attempts = ?",
                            (state, attempt.attempt, next_attempt_ms, attempt.status,
                             attempt.error, attempt.delivery_id, attempt.attempt - 1))
            if cur.rowcount != 1:
                return False
            c.execute("INSERT INTO delivery_attempts VALUES (?, ?, ?, ?, ?, ?)",
                      (attempt.delivery_id, attempt.attempt, attempt.started_ms,
                       attempt.duration_ms, attempt.status, attempt.error))
            return True

        return await self._write(run)

    async def delivery_attempts(self, delivery_id: str) -> list[DeliveryAttempt]:
        found = await self._read(lambda c: c.execute(
            "SELECT * FROM delivery_attempts WHERE delivery_id = ? ORDER BY attempt",
            (delivery_id,)).fetchall())
        return [rows.delivery_attempt(r) for r in found]

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        row = await self._read(lambda c: c.execute(
            "SELECT * FROM deliveries WHERE id = ?", (delivery_id,)).fetchone())
        return rows.delivery(row) if row else None

    async def webhook_secrets(self, account_id: str, now_ms: int,
                              create: str | None = None) -> list[WebhookSecret]:
        def live(c: Conn) -> list[WebhookSecret]:
            found = c.execute("SELECT * FROM webhook_secrets WHERE account_id = ? AND "
                              "(expires_ms IS NULL OR expires_ms > ?) ORDER BY created_ms DESC",
                              (account_id, now_ms)).fetchall()
            return [rows.webhook_secret(r) for r in found]

        def run(c: Conn) -> list[WebhookSecret]:
            found = live(c)
            if found or create is None:
                return found
            c.execute("INSERT INTO webhook_secrets VALUES (?, ?, ?, NULL)",
                      (account_id, create, now_ms))
            return live(c)

        if create is None:
            return await self._read(live)
        return await self._write(run)

    async def rotate_webhook_secret(self, account_id: str, secret: str, now_ms: int,
                                    overlap_ms: int) -> list[WebhookSecret]:
        def run(c: Conn) -> list[WebhookSecret]:
            c.execute("UPDATE webhook_secrets SET expires_ms = ? WHERE account_id = ? AND "
                      "(expires_ms IS NULL OR expires_ms > ?)",
                      (now_ms + overlap_ms, account_id, now_ms + overlap_ms))
            c.execute("INSERT INTO webhook_secrets VALUES (?, ?, ?, NULL)",
                      (account_id, secret, now_ms))
            found = c.execute("SELECT * FROM webhook_secrets WHERE account_id = ? AND "
                              "(expires_ms IS NULL OR expires_ms > ?) ORDER BY created_ms DESC",
                              (account_id, now_ms)).fetchall()
            return [rows.webhook_secret(r) for r in found]

        return await self._write(run)

    async def deliveries_for_task(self, task_id: str) -> list[Delivery]:
        found = await self._read(lambda c: c.execute(
            "SELECT * FROM deliveries WHERE task_id = ? ORDER BY created_ms", (task_id,)
        ).fetchall())
        return [rows.delivery(r) for r in found]


def _over_limit(c: Conn, key_id: str) -> Exception:
    row = c.execute("SELECT unfinished_tasks FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    if row is None:
        return Unauthorized(f"no API key {key_id!r} to submit a task for")
    return TooManyRequests(f"this API key already has {row[0]} unfinished tasks, the limit",
                           retry_after=5)


def _ledger(c: Conn, account_id: str, kind: str, amount: int, now_ms: int,
            task_id: str | None, note: str) -> int:
    (balance,) = c.execute("SELECT balance_micros FROM accounts WHERE id = ?",
                           (account_id,)).fetchone()
    c.execute("INSERT INTO ledger (account_id, kind, amount_micros, balance_after_micros, "
              "task_id, note, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
              (account_id, kind, amount, balance, task_id, note, now_ms))
    return int(balance)


def _move_money(c: Conn, task_id: str, finish: Finish) -> None:
    """Settle or refund the task's hold; the charge_state guard makes each happen once."""
    success = finish.state is TaskState.SUCCEEDED
    new_state = ChargeState.SETTLED if success else ChargeState.REFUNDED
    row = c.execute("UPDATE tasks SET charge_state = ? WHERE id = ? AND charge_state = ? "
                    "RETURNING account_id, price_micros",
                    (new_state, task_id, ChargeState.HELD)).fetchone()
    if row is None:
        return
    account_id, price = row[0], int(row[1])
    if success:
        _ledger(c, account_id, LedgerKind.SETTLE, 0, finish.now_ms, task_id, "")
        return
    c.execute("UPDATE accounts SET balance_micros = balance_micros + ? WHERE id = ?",
              (price, account_id))
    _ledger(c, account_id, LedgerKind.REFUND, price, finish.now_ms, task_id,
            finish.fail_code or "")


def _unavailable(done: str, exc: sqlite3.DatabaseError) -> StoreUnavailable:
    return StoreUnavailable(f"the database cannot be {done} now ({exc}); try again shortly")


def _probe(conn: Conn) -> None:
    conn.execute("INSERT INTO store_probe (id, filler) VALUES (1, ?)", ("x" * _PROBE_BYTES,))
    conn.execute("DELETE FROM store_probe WHERE id = 1")
