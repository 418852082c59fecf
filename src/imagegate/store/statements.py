"""Every SQL statement the stores run, by name, in one place: the portable ones once (written
with ``?`` placeholders), then what each dialect says its own way.

PostgreSQL takes the portable statements with ``%s`` placeholders (psycopg's), and its own claim
statements lock the rows they take with ``FOR UPDATE SKIP LOCKED``, so concurrent workers never
wait for each other nor take the same row. Every claim also repeats its state guard in the
UPDATE, so it is correct on its own, not only because SQLite has one writer.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["POSTGRES", "SQLITE"]

# Finished tasks whose results are deleted and which have no callback left to deliver, ended
# before a time, oldest first, through the partial index of tasks with deleted results
# (migration 8). A delivery never becomes pending again once it is not (DeliveryState), and a
# finished task gets no new one, so what this finds stays prunable.
# 1 for a queued task a claim at now may take, 0 for one waiting for its retry.
_READY = "CASE WHEN not_before_ms <= :now THEN 1 ELSE 0 END"
_PG_READY = "CASE WHEN not_before_ms <= %(now)s::bigint THEN 1 ELSE 0 END"
_PRUNABLE = ("SELECT id FROM tasks WHERE results_deleted = 1 AND complete_ms < ? "
             "AND state IN ('succeeded', 'failed', 'canceled') "
             "AND NOT EXISTS (SELECT 1 FROM deliveries WHERE deliveries.task_id = tasks.id "
             "AND deliveries.state = 'pending') ORDER BY complete_ms LIMIT ?")

_TASK_COLUMNS = ("id, account_id, key_id, model, input_json, request_type, callback_url, "
                 "provider, source, state, stage, created_ms, price_micros, charge_state, "
                 "result_token")

PORTABLE: dict[str, str] = {
    # Accounts and the ledger
    "insert_account": "INSERT INTO accounts (id, name, balance_micros, created_ms) "
                      "VALUES (?, ?, 0, ?)",
    "account": "SELECT * FROM accounts WHERE id = ?",
    "count_accounts": "SELECT COUNT(*) AS n FROM accounts",
    "balance": "SELECT balance_micros FROM accounts WHERE id = ?",
    "credit_within": "UPDATE accounts SET balance_micros = balance_micros + ? "
                     "WHERE id = ? AND balance_micros + ? BETWEEN 0 AND ?",
    "hold": "UPDATE accounts SET balance_micros = balance_micros - ? "
            "WHERE id = ? AND balance_micros >= ?",
    "give_back": "UPDATE accounts SET balance_micros = balance_micros + ? WHERE id = ?",
    "insert_ledger": "INSERT INTO ledger (account_id, kind, amount_micros, balance_after_micros, "
                     "task_id, note, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
    "ledger": "SELECT * FROM ledger WHERE account_id = ? ORDER BY id",
    # An operator's look-up of a task whose record may be pruned: it reads the whole ledger
    # (no index on task_id, which every submit and finish would write), and runs only when
    # the task itself is not found.
    "task_ledger": "SELECT * FROM ledger WHERE task_id = ? ORDER BY id",
    # API keys
    "insert_key": "INSERT INTO api_keys (id, account_id, key_hash, name, prefix, created_ms, "
                  "submit_rate, submit_burst, max_concurrent_tasks, models) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "key_by_hash": "SELECT * FROM api_keys WHERE key_hash = ?",
    "key": "SELECT * FROM api_keys WHERE id = ?",
    "keys": "SELECT * FROM api_keys ORDER BY created_ms, id",
    "revoke_key": "UPDATE api_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL",
    # A batch of submits: the slots it takes and the shared rate bucket it leaves (NULL: as
    # it was).
    "update_key_counts": "UPDATE api_keys SET unfinished_tasks = unfinished_tasks + ?, "
                         "rate_tokens = COALESCE(?, rate_tokens), "
                         "rate_updated_ms = COALESCE(?, rate_updated_ms) WHERE id = ?",
    "free_unfinished_slot": "UPDATE api_keys SET unfinished_tasks = unfinished_tasks - 1 "
                            "WHERE id = ?",
    # Tasks
    "insert_task": f"INSERT INTO tasks ({_TASK_COLUMNS}) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "task": "SELECT * FROM tasks WHERE id = ?",
    "renew_lease": "UPDATE tasks SET lease_until_ms = ?, stage = COALESCE(?, stage) "
                   "WHERE id = ? AND attempt = ? AND state = 'running'",
    # The fence: this attempt, still running, and (for the sweeper) still past its lease.
    "finish_task": "UPDATE tasks SET state = ?, stage = 'done', complete_ms = ?, expire_ms = ?, "
                   "results_json = ?, fail_code = ?, fail_msg = ?, attempts_json = ?, "
                   "notes_json = ?, lease_until_ms = NULL, worker_id = NULL "
                   "WHERE id = ? AND attempt = ? AND state = 'running' "
                   "AND (CAST(? AS BIGINT) IS NULL OR lease_until_ms < ?) "
                   "RETURNING key_id, account_id, price_micros",
    "requeue": "UPDATE tasks SET state = 'queued', stage = 'retrying', lease_until_ms = NULL, "
               "worker_id = NULL, not_before_ms = ?, attempts_json = ?, notes_json = ? "
               "WHERE id = ? AND attempt = ? AND state = 'running' "
               "AND (CAST(? AS BIGINT) IS NULL OR lease_until_ms < ?)",
    # A queued task no worker took before its deadline: failed where it waits.
    "fail_queued": "UPDATE tasks SET state = 'failed', stage = 'done', complete_ms = ?, "
                   "expire_ms = ?, fail_code = ?, fail_msg = ?, notes_json = ?, "
                   "not_before_ms = 0 WHERE id = ? AND state = 'queued' "
                   "RETURNING key_id, account_id, price_micros",
    # A client's cancel: a queued task ends canceled where it waits (the state guard makes it
    # race a claim safely: one of the two changes the row); a running one is only marked, for
    # its worker to end through the fenced finish.
    "cancel_queued": "UPDATE tasks SET state = 'canceled', stage = 'done', complete_ms = ?, "
                     "expire_ms = ?, fail_code = ?, fail_msg = ?, cancel_requested_ms = ?, "
                     "not_before_ms = 0 WHERE id = ? AND state = 'queued' "
                     "RETURNING key_id, account_id, price_micros",
    "request_cancel": "UPDATE tasks SET cancel_requested_ms = COALESCE(cancel_requested_ms, ?) "
                      "WHERE id = ? AND state = 'running'",
    "overdue_queued": "SELECT * FROM tasks WHERE state = 'queued' AND created_ms < ? "
                      "ORDER BY created_ms LIMIT ?",
    "change_charge": "UPDATE tasks SET charge_state = ? WHERE id = ? AND charge_state = ?",
    "expired_leases": "SELECT * FROM tasks WHERE state = 'running' AND lease_until_ms < ? "
                      "ORDER BY lease_until_ms LIMIT ?",
    "expired_results": "SELECT * FROM tasks WHERE results_deleted = 0 AND expire_ms < ? "
                       "ORDER BY expire_ms LIMIT ?",
    "results_deleted": "UPDATE tasks SET results_deleted = 1 WHERE id = ?",
    # Callback deliveries
    "insert_delivery": "INSERT INTO deliveries (id, task_id, account_id, url, body, state, "
                       "attempts, next_attempt_ms, created_ms) "
                       "VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
    # Fenced on the attempt count: a dispatcher whose lease ran out records nothing.
    "record_delivery": "UPDATE deliveries SET state = ?, attempts = ?, next_attempt_ms = ?, "
                       "lease_until_ms = NULL, last_status = ?, last_error = ? "
                       "WHERE id = ? AND attempts = ?",
    "insert_delivery_attempt": "INSERT INTO delivery_attempts (delivery_id, attempt, "
                               "started_ms, duration_ms, status, error) "
                               "VALUES (?, ?, ?, ?, ?, ?)",
    "delivery_attempts": "SELECT * FROM delivery_attempts WHERE delivery_id = ? "
                         "ORDER BY attempt",
    "delivery": "SELECT * FROM deliveries WHERE id = ?",
    "deliveries_of_task": "SELECT * FROM deliveries WHERE task_id = ? ORDER BY created_ms",
    # Webhook signing secrets
    "live_secrets": "SELECT * FROM webhook_secrets WHERE account_id = ? "
                    "AND (expires_ms IS NULL OR expires_ms > ?) ORDER BY created_ms DESC",
    "insert_secret": "INSERT INTO webhook_secrets (account_id, secret, created_ms, expires_ms) "
                     "VALUES (?, ?, ?, NULL)",
    "retire_secrets": "UPDATE webhook_secrets SET expires_ms = ? WHERE account_id = ? "
                      "AND (expires_ms IS NULL OR expires_ms > ?)",
    # The fleet's unfinished work for /metrics, in one statement (one snapshot): each part
    # reads one partial index (tasks_queued, tasks_running, deliveries_pending), so a scrape
    # costs the backlog, never the history. Every held charge belongs to a queued or running
    # task (each end settles or refunds in its own transaction), so the money held is summed
    # there too.
    "fleet_stats": "SELECT 'queued' AS kind, model, COUNT(*) AS n, "
                   "MIN(created_ms) AS oldest_ms, "
                   "SUM(CASE WHEN charge_state = 'held' THEN price_micros ELSE 0 END) AS held "
                   "FROM tasks WHERE state = 'queued' GROUP BY model "
                   "UNION ALL SELECT 'running', model, COUNT(*), MIN(created_ms), "
                   "SUM(CASE WHEN charge_state = 'held' THEN price_micros ELSE 0 END) "
                   "FROM tasks WHERE state = 'running' GROUP BY model "
                   "UNION ALL SELECT 'delivery', NULL, COUNT(*), MIN(created_ms), 0 "
                   "FROM deliveries WHERE state = 'pending'",
    # Schema versions and the readiness probe
    "create_versions": "CREATE TABLE IF NOT EXISTS schema_migrations "
                       "(version INTEGER PRIMARY KEY, applied_ms BIGINT NOT NULL)",
    "versions": "SELECT version FROM schema_migrations ORDER BY version",
    "record_version": "INSERT INTO schema_migrations (version, applied_ms) VALUES (?, ?)",
    "write_probe": "INSERT INTO store_probe (id, filler) VALUES (1, ?) ON CONFLICT (id) DO UPDATE "
                   "SET filler = excluded.filler",
    "ping": "SELECT 1 AS one",
    # An idempotency key's row, taking the place of one past its 24 hours (created before the
    # last parameter); a live row stays as it is (the key's row lock in the submit's
    # transaction keeps two submits of one key from both finding none).
    "insert_idempotency_key": "INSERT INTO idempotency_keys "
                              "(key_id, idem_key, request_hash, task_id, created_ms) "
                              "VALUES (?, ?, ?, ?, ?) ON CONFLICT (key_id, idem_key) DO UPDATE "
                              "SET request_hash = excluded.request_hash, "
                              "task_id = excluded.task_id, created_ms = excluded.created_ms "
                              "WHERE idempotency_keys.created_ms < ?",
    "prune_idempotency_keys": "DELETE FROM idempotency_keys WHERE (key_id, idem_key) IN "
                              "(SELECT key_id, idem_key FROM idempotency_keys "
                              "WHERE created_ms < ? ORDER BY created_ms LIMIT ?)",
}


def _pyformat(sql: str) -> str:
    """A portable statement with psycopg's placeholders (no statement here holds a literal
    ``?`` or ``%``)."""
    assert "%" not in sql, sql
    return sql.replace("?", "%s")


# The claims take named parameters (the same names in every dialect): lease_until, worker,
# now, models (every model when NULL; a JSON array in SQLite, a text[] in PostgreSQL), limit.
# So does the list of a key's tasks: key, before_ms and before_id (the exclusive upper bound
# of (created_ms, id): the cursor or createdBefore), after_ms (createdAfter, inclusive), states
# (a list of internal states), model (any when NULL), limit.
# The lock_ statements read the rows a batch of submits changes, locked until the end of the
# transaction (in SQLite the write transaction is the lock); they, tasks_by_ids and the prune_
# statements take a list of ids (``Tx.array``).

_SQLITE_OWN: dict[str, str] = {
    "idempotency_keys": "SELECT key_id, idem_key, request_hash, task_id, created_ms "
                        "FROM idempotency_keys WHERE key_id IN (SELECT value FROM json_each(?)) "
                        "AND idem_key IN (SELECT value FROM json_each(?))",
    "lock_balances": "SELECT id, balance_micros FROM accounts "
                     "WHERE id IN (SELECT value FROM json_each(?))",
    "lock_keys": "SELECT id, unfinished_tasks, rate_tokens, rate_updated_ms FROM api_keys "
                 "WHERE id IN (SELECT value FROM json_each(?))",
    "tasks_by_ids": "SELECT * FROM tasks WHERE id IN (SELECT value FROM json_each(?))",
    "active_keys": "SELECT id FROM api_keys WHERE revoked_ms IS NULL "
                   "AND id IN (SELECT value FROM json_each(:ids))",
    "lock_migrations": "SELECT 1 AS locked",  # the write transaction is the lock
    # A key's tasks newest first: tasks_key_created walked backwards from the bound (a row
    # value, which SQLite takes as the range of the index), filters checked on each row, up
    # to the limit.
    "tasks_of_key": "SELECT * FROM tasks WHERE key_id = :key "
                    "AND (created_ms, id) < (:before_ms, :before_id) "
                    "AND created_ms >= :after_ms "
                    "AND state IN (SELECT value FROM json_each(:states)) "
                    "AND (:model IS NULL OR model = :model) "
                    "ORDER BY created_ms DESC, id DESC LIMIT :limit",
    "has_versions": "SELECT COUNT(*) AS n FROM sqlite_master "
                    "WHERE type = 'table' AND name = 'schema_migrations'",
    # Oldest first among the ready ones (ties by id, the queue positions' order), through the
    # partial index of queued tasks; the UPDATE repeats the state guard.
    "claim_tasks": "UPDATE tasks SET state = 'running', stage = 'running', "
                   "attempt = attempt + 1, lease_until_ms = :lease_until, worker_id = :worker, "
                   "started_ms = COALESCE(started_ms, :now) "
                   "WHERE state = 'queued' AND id IN (SELECT id FROM tasks "
                   "WHERE state = 'queued' AND not_before_ms <= :now "
                   "AND (:models IS NULL OR model IN (SELECT value FROM json_each(:models))) "
                   "ORDER BY created_ms, id LIMIT :limit) RETURNING *",
    "claim_deliveries": "UPDATE deliveries SET lease_until_ms = :lease_until "
                        "WHERE state = 'pending' AND id IN (SELECT id FROM deliveries "
                        "WHERE state = 'pending' AND next_attempt_ms <= :now "
                        "AND (lease_until_ms IS NULL OR lease_until_ms < :now) "
                        "ORDER BY next_attempt_ms LIMIT :limit) RETURNING *",
    # Record retention: a batch of prunable tasks (the write transaction holds them), then
    # their rows children first, so no foreign key is in the way.
    "prunable_tasks": _PRUNABLE,
    "prune_delivery_attempts": "DELETE FROM delivery_attempts WHERE delivery_id IN "
                               "(SELECT id FROM deliveries "
                               "WHERE task_id IN (SELECT value FROM json_each(?)))",
    "prune_deliveries": "DELETE FROM deliveries "
                        "WHERE task_id IN (SELECT value FROM json_each(?))",
    "prune_tasks": "DELETE FROM tasks WHERE id IN (SELECT value FROM json_each(?))",
    # Queue positions of some tasks (streamTask): the queued tasks up to the latest of them,
    # of every model, read once through tasks_queued in the claim's order (created_ms, ties by
    # id); each is 1 + the tasks before it that a claim at :now may take (not_before_ms passed).
    # The outer filter keeps the tasks asked about. The scan covers the queue ahead of the
    # deepest of them, never the finished history.
    "queue_positions": "SELECT id, position FROM (SELECT id, 1 + SUM(" + _READY + ") OVER "
                       "(ORDER BY created_ms, id ROWS UNBOUNDED PRECEDING) - " + _READY
                       + " AS position FROM tasks "
                       "WHERE state = 'queued' AND created_ms <= (SELECT MAX(created_ms) "
                       "FROM tasks WHERE state = 'queued' "
                       "AND id IN (SELECT value FROM json_each(:ids)))) AS ranked "
                       "WHERE id IN (SELECT value FROM json_each(:ids))",
}

_POSTGRES_OWN: dict[str, str] = {
    "idempotency_keys": "SELECT key_id, idem_key, request_hash, task_id, created_ms "
                        "FROM idempotency_keys WHERE key_id = ANY(%s::text[]) "
                        "AND idem_key = ANY(%s::text[])",
    # In id order, so two transactions locking several rows never wait for each other in a
    # circle; NO KEY UPDATE, as the UPDATE that follows takes, lets a ledger or task row that
    # refers to the account or key be inserted meanwhile.
    "lock_balances": "SELECT id, balance_micros FROM accounts WHERE id = ANY(%s::text[]) "
                     "ORDER BY id FOR NO KEY UPDATE",
    "lock_keys": "SELECT id, unfinished_tasks, rate_tokens, rate_updated_ms FROM api_keys "
                 "WHERE id = ANY(%s::text[]) ORDER BY id FOR NO KEY UPDATE",
    "tasks_by_ids": "SELECT * FROM tasks WHERE id = ANY(%s::text[])",
    "active_keys": "SELECT id FROM api_keys WHERE revoked_ms IS NULL "
                   "AND id = ANY(%(ids)s::text[])",
    # A key's tasks newest first: an index scan of tasks_key_created backwards, from the row
    # comparison (an index condition) down, filters checked on each row, up to the limit. The
    # casts give a prepared statement's generic plan the column types, so it keeps the index.
    "tasks_of_key": "SELECT * FROM tasks WHERE key_id = %(key)s "
                    "AND (created_ms, id) < (%(before_ms)s::bigint, %(before_id)s::text) "
                    "AND created_ms >= %(after_ms)s::bigint "
                    "AND state = ANY(%(states)s::text[]) "
                    "AND (%(model)s::text IS NULL OR model = %(model)s::text) "
                    "ORDER BY created_ms DESC, id DESC LIMIT %(limit)s",
    # Processes starting together migrate one at a time (released at commit).
    "lock_migrations": "SELECT pg_advisory_xact_lock(7361094528) AS locked",
    "has_versions": "SELECT COUNT(*) AS n FROM information_schema.tables "
                    "WHERE table_schema = current_schema() AND table_name = 'schema_migrations'",
    # The ids are picked in a sub-select run once (an InitPlan), and the UPDATE finds them by
    # primary key: no join whose plan could turn into a scan of the backlog once the statement
    # is prepared and planned without its values.
    "claim_tasks": "UPDATE tasks SET state = 'running', stage = 'running', "
                   "attempt = attempt + 1, lease_until_ms = %(lease_until)s, "
                   "worker_id = %(worker)s, started_ms = COALESCE(started_ms, %(now)s) "
                   "WHERE id = ANY(ARRAY(SELECT id FROM tasks WHERE state = 'queued' "
                   "AND not_before_ms <= %(now)s "
                   "AND (%(models)s::text[] IS NULL OR model = ANY(%(models)s::text[])) "
                   "ORDER BY created_ms, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)) "
                   "AND state = 'queued' RETURNING *",
    "claim_deliveries": "UPDATE deliveries SET lease_until_ms = %(lease_until)s "
                        "WHERE id = ANY(ARRAY(SELECT id FROM deliveries "
                        "WHERE state = 'pending' AND next_attempt_ms <= %(now)s "
                        "AND (lease_until_ms IS NULL OR lease_until_ms < %(now)s) "
                        "ORDER BY next_attempt_ms LIMIT %(limit)s FOR UPDATE SKIP LOCKED)) "
                        "AND state = 'pending' RETURNING *",
    # Record retention: the batch is locked until the transaction ends (two sweepers prune
    # different batches), then its rows are deleted children first.
    "prunable_tasks": _pyformat(_PRUNABLE) + " FOR UPDATE OF tasks SKIP LOCKED",
    "prune_delivery_attempts": "DELETE FROM delivery_attempts WHERE delivery_id IN "
                               "(SELECT id FROM deliveries WHERE task_id = ANY(%s::text[]))",
    "prune_deliveries": "DELETE FROM deliveries WHERE task_id = ANY(%s::text[])",
    "prune_tasks": "DELETE FROM tasks WHERE id = ANY(%s::text[])",
    # As SQLite's; the bound is an InitPlan, so the scan of tasks_queued is an index range
    # whose rows come in created_ms order (an incremental sort puts ties in id order).
    "queue_positions": "SELECT id, position FROM (SELECT id, 1 + SUM("
                       + _PG_READY + ") OVER "
                       "(ORDER BY created_ms, id ROWS UNBOUNDED PRECEDING) - "
                       + _PG_READY + " AS position FROM tasks "
                       "WHERE state = 'queued' AND created_ms <= (SELECT MAX(created_ms) "
                       "FROM tasks WHERE state = 'queued' AND id = ANY(%(ids)s::text[]))) "
                       "AS ranked WHERE id = ANY(%(ids)s::text[])",
}


SQLITE = MappingProxyType({**PORTABLE, **_SQLITE_OWN})
POSTGRES = MappingProxyType({**{k: _pyformat(v) for k, v in PORTABLE.items()}, **_POSTGRES_OWN})
