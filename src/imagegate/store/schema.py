"""The schema, as ordered migrations with one version history for every dialect: version N is
the same schema in SQLite and in PostgreSQL. Written once in SQL both accept, but for what each
says its own way (the ledger's auto-numbered id), which ``_for_postgres`` changes.

Append new migrations; never edit one that has shipped. ``schema_migrations`` records which ran,
and a store refuses a database whose newest version this code does not know.
"""

from __future__ import annotations

__all__ = ["POSTGRES_MIGRATIONS", "SQLITE_MIGRATIONS"]

_MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, """
CREATE TABLE accounts (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    balance_micros  BIGINT NOT NULL CHECK (balance_micros >= 0),
    created_ms      BIGINT NOT NULL
);
CREATE TABLE api_keys (
    id                    TEXT PRIMARY KEY,
    account_id            TEXT NOT NULL REFERENCES accounts(id),
    key_hash              TEXT NOT NULL UNIQUE,
    name                  TEXT NOT NULL,
    prefix                TEXT NOT NULL,
    created_ms            BIGINT NOT NULL,
    revoked_ms            BIGINT,
    submit_rate           DOUBLE PRECISION,
    submit_burst          INTEGER,
    max_concurrent_tasks  INTEGER,
    models                TEXT
);
CREATE TABLE ledger (
    id                    INTEGER PRIMARY KEY,
    account_id            TEXT NOT NULL REFERENCES accounts(id),
    kind                  TEXT NOT NULL,
    amount_micros         BIGINT NOT NULL,
    balance_after_micros  BIGINT NOT NULL,
    task_id               TEXT,
    note                  TEXT NOT NULL DEFAULT '',
    created_ms            BIGINT NOT NULL
);
CREATE INDEX ledger_account ON ledger (account_id, id);
CREATE TABLE tasks (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts(id),
    key_id          TEXT NOT NULL,
    model           TEXT NOT NULL,
    input_json      TEXT NOT NULL,
    request_type    TEXT NOT NULL,
    callback_url    TEXT,
    provider        TEXT NOT NULL,
    source          TEXT,
    state           TEXT NOT NULL,
    stage           TEXT NOT NULL,
    attempt         INTEGER NOT NULL DEFAULT 0,
    lease_until_ms  BIGINT,
    worker_id       TEXT,
    not_before_ms   BIGINT NOT NULL DEFAULT 0,
    created_ms      BIGINT NOT NULL,
    started_ms      BIGINT,
    complete_ms     BIGINT,
    expire_ms       BIGINT,
    price_micros    BIGINT NOT NULL,
    charge_state    TEXT NOT NULL,
    result_token    TEXT NOT NULL,
    results_json    TEXT NOT NULL DEFAULT '[]',
    results_deleted INTEGER NOT NULL DEFAULT 0,
    fail_code       TEXT,
    fail_msg        TEXT,
    attempts_json   TEXT NOT NULL DEFAULT '[]',
    notes_json      TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX tasks_queue ON tasks (state, not_before_ms, created_ms);
CREATE INDEX tasks_key_state ON tasks (key_id, state);
CREATE INDEX tasks_lease ON tasks (state, lease_until_ms);
CREATE INDEX tasks_expiry ON tasks (results_deleted, expire_ms);
CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    task_id          TEXT NOT NULL REFERENCES tasks(id),
    account_id       TEXT NOT NULL,
    url              TEXT NOT NULL,
    body             TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  BIGINT NOT NULL,
    lease_until_ms   BIGINT,
    last_status      INTEGER,
    last_error       TEXT,
    created_ms       BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_ms);
CREATE INDEX deliveries_task ON deliveries (task_id);
CREATE TABLE delivery_attempts (
    delivery_id  TEXT NOT NULL REFERENCES deliveries(id),
    attempt      INTEGER NOT NULL,
    started_ms   BIGINT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    status       INTEGER,
    error        TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
"""),
    (2, """
CREATE TABLE webhook_secrets (
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    secret      TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    expires_ms  BIGINT,
    PRIMARY KEY (account_id, secret)
);
"""),
    # The count of a key's queued and running tasks, kept by the transactions that change it, so
    # the submit-time limit check does not count rows.
    (3, """
ALTER TABLE api_keys ADD COLUMN unfinished_tasks INTEGER NOT NULL DEFAULT 0;
UPDATE api_keys SET unfinished_tasks = (SELECT COUNT(*) FROM tasks
    WHERE tasks.key_id = api_keys.id AND tasks.state IN ('queued', 'running'));
"""),
    # Scratch rows a readiness probe writes and deletes, to learn whether the database can
    # take a write again after one failed (a full disk).
    (4, """
CREATE TABLE store_probe (
    id      INTEGER PRIMARY KEY,
    filler  TEXT NOT NULL
);
"""),
    # The queue claim walks queued tasks oldest first and stops at its limit, instead of
    # sorting the backlog; the delivery claim likewise.
    (5, """
CREATE INDEX tasks_queued ON tasks (created_ms) WHERE state = 'queued';
DROP INDEX tasks_queue;
CREATE INDEX deliveries_pending ON deliveries (next_attempt_ms) WHERE state = 'pending';
"""),
    # Each key's submit-rate bucket, shared by every API process of the database.
    (6, """
ALTER TABLE api_keys ADD COLUMN rate_tokens DOUBLE PRECISION;
ALTER TABLE api_keys ADD COLUMN rate_updated_ms BIGINT;
"""),
    # Indexes only where a statement uses them, so every submit writes fewer of them, and
    # none a planner without statistics (SQLite's, never ANALYZEd) could take for the queue:
    # the lease sweep gets a partial index of running tasks, so a query about queued tasks
    # has only tasks_queued to choose. No statement looks tasks up by key, and the delivery
    # claim uses deliveries_pending.
    (7, """
DROP INDEX tasks_lease;
CREATE INDEX tasks_running ON tasks (lease_until_ms) WHERE state = 'running';
DROP INDEX tasks_key_state;
DROP INDEX deliveries_due;
"""),
    # Record retention: the sweeper deletes finished tasks whose results are gone once their
    # records are old enough, oldest first, walking a partial index of exactly those tasks.
    # The expiry sweep's index becomes partial too (finished tasks whose results are not yet
    # deleted), so each sweep has one index to choose and a submit writes neither. No foreign
    # key stands in the way of the delete: a task's deliveries and their attempts are deleted
    # before it in the same transaction, and the ledger names a task by a plain id (no
    # reference), so money history is never touched.
    (8, """
DROP INDEX tasks_expiry;
CREATE INDEX tasks_expiring ON tasks (expire_ms)
    WHERE results_deleted = 0 AND expire_ms IS NOT NULL;
CREATE INDEX tasks_prunable ON tasks (complete_ms) WHERE results_deleted = 1;
"""),
    # A client's request to cancel a running task (cancelTask): its worker reads it and ends
    # the attempt canceled. A queued task is canceled at once and needs no mark.
    (9, """
ALTER TABLE tasks ADD COLUMN cancel_requested_ms BIGINT;
"""),
    # The list of a key's own tasks (GET /api/v1/tasks), newest first with a cursor: one key's
    # tasks walked backwards in (created_ms, id) order from the cursor, stopping at the page's
    # size. Every submit writes it. IF NOT EXISTS: on a large PostgreSQL database an operator
    # may build it beforehand with CREATE INDEX CONCURRENTLY (docs/fleet.md), which a migration,
    # run in a transaction, cannot.
    (10, """
CREATE INDEX IF NOT EXISTS tasks_key_created ON tasks (key_id, created_ms, id);
"""),
    # Idempotent submits (the Idempotency-Key header): a key's idempotency key names the task
    # its first submit stored and the hash of that request, written in the submit's own
    # transaction. A row older than 24 hours counts as unused; the sweeper deletes those,
    # oldest first, through idempotency_keys_created.
    (11, """
CREATE TABLE idempotency_keys (
    key_id        TEXT NOT NULL,
    idem_key      TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    PRIMARY KEY (key_id, idem_key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_ms);
"""),
    # The claim and the queue positions order queued tasks by created_ms, then id: with the id
    # in the index, both read it in that order, with no sort of tasks submitted together.
    (12, """
DROP INDEX tasks_queued;
CREATE INDEX tasks_queued ON tasks (created_ms, id) WHERE state = 'queued';
"""),
)

_SQLITE_LEDGER_ID = "CREATE TABLE ledger (\n    id                    INTEGER PRIMARY KEY,"
_POSTGRES_LEDGER_ID = ("CREATE TABLE ledger (\n"
                       "    id                    BIGINT GENERATED BY DEFAULT AS IDENTITY "
                       "PRIMARY KEY,")


def _for_postgres(version: int, sql: str) -> str:
    if version == 1:
        assert sql.count(_SQLITE_LEDGER_ID) == 1
        return sql.replace(_SQLITE_LEDGER_ID, _POSTGRES_LEDGER_ID)
    return sql


SQLITE_MIGRATIONS = _MIGRATIONS
POSTGRES_MIGRATIONS = tuple((v, _for_postgres(v, sql)) for v, sql in _MIGRATIONS)
