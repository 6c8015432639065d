"""The schema: SQL migrations in `migrations/`, applied in order under an
advisory lock (so two `db upgrade`s at once apply each exactly once), with
code steps for data changes SQL cannot make (sealing numbers needs the keys)."""
from __future__ import annotations

from importlib import resources

import asyncpg

from bridge.privacy.crypto import KeyRing
from bridge.store.db import Database
from bridge.store.rows import seal_participants

MIGRATION_LOCK = 0x6D61736B  # 'mask': serialises concurrent `db upgrade`
CODE_MARKER = "-- masking:code "


def migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("bridge.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


def migration_steps(sql: str) -> list[tuple[str, str]]:
    """A migration's parts in order: ("sql", text) and ("code", step name) at
    each `-- masking:code NAME` line, for data changes SQL cannot make."""
    steps, current = [], []
    for line in sql.splitlines():
        if line.startswith(CODE_MARKER):
            steps.append(("sql", "\n".join(current)))
            steps.append(("code", line[len(CODE_MARKER):].strip()))
            current = []
        else:
            current.append(line)
    steps.append(("sql", "\n".join(current)))
    return [(kind, part) for kind, part in steps if kind == "code" or part.strip()]


class Schema:
    """`store.schema`."""

    def __init__(self, db: Database):
        self.db = db

    async def upgrade(self, until: int | None = None) -> list[str]:
        """Apply pending migrations in order (up to version `until`); return the names applied."""
        applied: list[str] = []
        async with self.db.pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
                for version, name, sql in migrations():
                    if version in done or (until is not None and version > until):
                        continue
                    async with conn.transaction():
                        for kind, part in migration_steps(sql):
                            if kind == "sql":
                                await conn.execute(part)
                            else:
                                await CODE_STEPS[part](conn, self.db.keys)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                        )
                    applied.append(name)
            finally:
                try:
                    await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
                except BaseException:
                    conn.terminate()  # the pool resets no session state: no lock may go back with it
                    raise
        return applied


async def _seal_participant_numbers(conn: asyncpg.Connection, keys: KeyRing) -> None:
    """0005: encrypt and hash the numbers stored in clear before it."""
    rows = await conn.fetch("SELECT id, participant_a, participant_b FROM masking_sessions")
    await conn.executemany(
        "UPDATE masking_sessions SET participant_a_hash = $2, participant_b_hash = $3, participant_a_sealed = $4,"
        " participant_b_sealed = $5, key_id = $6 WHERE id = $1",
        [(r["id"], *seal_participants(keys, r["id"], r["participant_a"], r["participant_b"])) for r in rows])
    numbers = await conn.fetch("SELECT DISTINCT number FROM session_participants")
    await conn.executemany("UPDATE session_participants SET number_hash = $2 WHERE number = $1",
                           [(r["number"], keys.lookup_hash(r["number"])) for r in numbers])


async def _add_audit_key(_conn: asyncpg.Connection, keys: KeyRing) -> None:
    """0019: a key file made before the keyed audit chain gets its first audit key."""
    if keys.audit_active is None:
        keys.add_audit_key()
        keys.save()


CODE_STEPS = {"seal_participant_numbers": _seal_participant_numbers, "add_audit_key": _add_audit_key}
