"""Attacks on the audit trail by whoever can write to the database but holds
no key file (a DBA, a stolen superuser password): deleting the newest rows,
rewriting rows with a recomputed plain SHA-256, forging a checkpoint.
`masking audit verify` must catch each, against the keyed chain and the signed
checkpoints kept outside the database; the checkpoint file is the owner's alone."""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import time
import uuid
from datetime import datetime, timezone
from types import SimpleNamespace

import asyncpg
import pytest

from bridge.auditing import check_since, take_checkpoint
from bridge.config import Settings
from bridge.privacy.audit import GENESIS, AuditEntry, Problem, sealed
from bridge.privacy.crypto import KeyRing
from bridge.store import Store
from tests.integration.conftest import query
from tests.integration.test_cli import masking
from tests.support.keys import shared_keys
from tests.support.stack import ADMIN_DSN, app_role_name, create_database, database_env, drop_database

ROWS = 6


@pytest.fixture
def trail(app_db, tmp_path):
    """A fresh trail of ROWS rows written by the application role, and a state dir with no checkpoint yet."""
    async def fresh():
        conn = await asyncpg.connect(app_db.admin)
        try:
            await conn.execute("SET session_replication_role = replica")
            await conn.execute("TRUNCATE audit_log")
        finally:
            await conn.close()
        store = await Store.connect(app_db.app, shared_keys())
        try:
            for n in range(ROWS):
                await store.audit.append("apikey:ab12:dpo", "recording.read", "recording", str(uuid.uuid4()),
                                         source="10.0.0.7", reason=f"ticket {n}", details={"n": n})
        finally:
            await store.close()

    asyncio.run(fresh())
    return SimpleNamespace(env={**app_db.env, "MASKING_STATE_DIR": str(tmp_path)}, admin=app_db.admin,
                           app=app_db.app, checkpoints=tmp_path / "audit" / "checkpoints.jsonl")


def as_dba(admin_dsn: str, *statements: tuple) -> None:
    """A superuser switches triggers off for the session (the append-only one included) and changes rows."""
    async def run():
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute("SET session_replication_role = replica")
            for sql, *args in statements:
                await conn.execute(sql, *args)
        finally:
            await conn.close()

    asyncio.run(run())


def plain_sha256(row: dict) -> bytes:
    """What anyone who read the published format computes: SHA-256 of the row's canonical JSON
    (every column but `hash`, times in UTC, bytes in hex; `key_id` only when set)."""
    def plain(value):
        if isinstance(value, datetime):
            return value.astimezone(timezone.utc).isoformat(timespec="microseconds")
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, bytes):
            return value.hex()
        return value

    document = {k: plain(v) for k, v in row.items() if k != "hash" and not (k == "key_id" and v is None)}
    document["details"] = json.loads(row["details"])
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).digest()


def rewrite(trail, from_seq: int, drop_key: bool) -> None:
    """Change row `from_seq`'s reason, then recompute plain SHA-256 hashes from it to the head, relinked."""
    rows = query(trail.admin, "SELECT * FROM audit_log ORDER BY seq")
    prev = rows[from_seq - 2]["hash"] if from_seq > 1 else bytes(32)
    statements = [("ALTER TABLE audit_log DROP CONSTRAINT IF EXISTS audit_log_keyed_after_switch",)]
    for row in rows[from_seq - 1:]:
        if row["seq"] == from_seq:
            row["reason"] = "nothing to see"
        if drop_key and "key_id" in row:
            row["key_id"] = None
        row["prev_hash"] = prev
        row["hash"] = prev = plain_sha256(row)
        key_id = ", key_id = NULL" if drop_key and "key_id" in row else ""
        statements.append((f"UPDATE audit_log SET reason = $2, prev_hash = $3, hash = $4{key_id} WHERE seq = $1",
                           row["seq"], row["reason"], row["prev_hash"], row["hash"]))
    as_dba(trail.admin, *statements)


def checkpoint(trail) -> None:
    masking(trail, "audit", "checkpoint")


def verify(trail):
    return masking(trail, "audit", "verify")


# -- truncation --------------------------------------------------------------------------------------
def test_a_dba_deleting_the_newest_audit_row_is_caught_by_verify(trail):
    checkpoint(trail)

    as_dba(trail.admin, ("DELETE FROM audit_log WHERE seq = $1", ROWS))
    result = verify(trail)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"broken at seq {ROWS}" in result.stdout and "deleted" in result.stdout


def test_a_dba_deleting_the_newest_rows_while_the_trail_grows_on_is_caught_by_verify(trail):
    checkpoint(trail)

    as_dba(trail.admin, ("DELETE FROM audit_log WHERE seq >= $1", ROWS - 1))
    masking(trail, "apikeys", "create", "--name", "after", "--scope", "audit")  # new rows take the freed seqs
    masking(trail, "apikeys", "create", "--name", "after2", "--scope", "audit")
    result = verify(trail)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"broken at seq {ROWS}" in result.stdout and "rewritten" in result.stdout


# -- rewriting ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("drop_key", "problem"), [(False, "edited"), (True, "unkeyed")],
                         ids=["key-ids-kept", "key-ids-dropped"])
def test_a_row_rewritten_with_a_recomputed_plain_sha256_is_caught_by_verify(trail, drop_key, problem):
    rewrite(trail, from_seq=3, drop_key=drop_key)
    result = verify(trail)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "broken at seq 3" in result.stdout and problem in result.stdout


def test_a_whole_trail_rewritten_as_a_plain_chain_is_caught_by_its_checkpoint(trail):
    checkpoint(trail)

    rewrite(trail, from_seq=1, drop_key=True)
    result = verify(trail)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"broken at seq {ROWS}" in result.stdout and "rewritten" in result.stdout


def test_verify_passes_on_an_untouched_trail_and_says_what_it_checked_against(trail):
    checkpoint(trail)
    masking(trail, "apikeys", "create", "--name", "later", "--scope", "audit")

    result = verify(trail)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{ROWS + 1} rows intact" in result.stdout and f"newest of seq {ROWS}" in result.stdout


# -- the checkpoints themselves -----------------------------------------------------------------------
def test_the_checkpoint_file_is_readable_and_writable_by_its_owner_only(trail):
    os.umask(old := os.umask(0o022))
    try:
        checkpoint(trail)
    finally:
        os.umask(old)
    trail.checkpoints.parent.chmod(0o755)
    trail.checkpoints.chmod(0o644)  # loosened by hand: the next checkpoint tightens it
    checkpoint(trail)

    assert stat.S_IMODE(trail.checkpoints.stat().st_mode) == 0o600
    lines = trail.checkpoints.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [ROWS, ROWS]


def test_a_forged_checkpoint_line_makes_verify_distrust_the_file(trail):
    checkpoint(trail)
    forged = json.loads(trail.checkpoints.read_text())
    forged.update(seq=2, hash=query(trail.admin, "SELECT hash FROM audit_log WHERE seq = 2")[0]["hash"].hex(),
                  at=datetime.now(timezone.utc).isoformat())
    with trail.checkpoints.open("a") as out:
        out.write(json.dumps(forged) + "\n")

    result = verify(trail)

    assert result.returncode == 1
    assert "line 2" in result.stdout and "signature does not verify" in result.stdout


def test_the_service_check_names_a_truncation_since_its_last_checkpoint(trail):
    async def scenario():
        store = await Store.connect(trail.app, shared_keys())
        settings = Settings.from_env(trail.env)
        try:
            last, failures = await take_checkpoint(store, settings)
            intact = await check_since(store, last)
            await asyncio.to_thread(as_dba, trail.admin, ("DELETE FROM audit_log WHERE seq = $1", ROWS))
            return failures, intact, await check_since(store, last)
        finally:
            await store.close()

    failures, intact, truncated = asyncio.run(scenario())
    assert failures == [] and intact.ok
    assert not truncated.ok and truncated.problem == Problem.DELETED and truncated.first_bad_seq == ROWS


def test_the_stacks_service_checkpoints_the_head_at_start_in_a_file_only_it_can_read(stack):
    path = stack.settings.audit_checkpoint_path
    deadline = time.monotonic() + 15
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    result = masking(stack, "audit", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checkpoint(s)" in result.stdout


# -- upgrading a trail written before the keyed chain -------------------------------------------------
def test_rows_from_before_the_upgrade_stay_verifiable_and_no_unkeyed_row_can_follow(tmp_path):
    name, role = f"masking_upgrade_{uuid.uuid4().hex[:8]}", app_role_name()
    env = {**database_env(ADMIN_DSN, name, role), "MASKING_STATE_DIR": str(tmp_path),
           "MASKING_KEYS_FILE": str(tmp_path / "keys.json")}
    old_key_file(tmp_path / "keys.json")
    asyncio.run(create_database(name))
    try:
        asyncio.run(trail_before_the_keyed_chain(env["MASKING_DATABASE_ADMIN_URL"], tmp_path / "keys.json", rows=3))
        operator = SimpleNamespace(env=env)

        upgraded = masking(operator, "db", "upgrade")
        masking(operator, "apikeys", "create", "--name", "after-the-upgrade", "--scope", "audit")
        result = verify(operator)

        assert upgraded.returncode == 0 and "added audit key" in upgraded.stderr, upgraded.stderr
        assert KeyRing.load(tmp_path / "keys.json").audit_active is not None
        assert result.returncode == 0, result.stdout + result.stderr
        assert "4 rows intact (3 from before the keyed chain)" in result.stdout
        keyed = query(env["MASKING_DATABASE_ADMIN_URL"], "SELECT seq, key_id FROM audit_log ORDER BY seq")
        assert [r["key_id"] is None for r in keyed] == [True, True, True, False]
        with pytest.raises(asyncpg.CheckViolationError):
            as_dba(env["MASKING_DATABASE_ADMIN_URL"], (
                "INSERT INTO audit_log (seq, at, actor, action, target_type, target_id, source, prev_hash, hash)"
                " VALUES (5, now(), 'x', 'y', 'z', '1', 's', $1, $1)", bytes(32)))
    finally:
        asyncio.run(drop_database(name, role=role))


def old_key_file(path) -> None:
    """A key file as written before audit keys existed."""
    KeyRing.generate().save(path)
    document = json.loads(path.read_text())
    del document["audit"], document["audit_active"]
    path.write_text(json.dumps(document))


async def trail_before_the_keyed_chain(admin_dsn: str, keys_path, rows: int) -> None:
    """The schema before migration 0019, and rows appended as the code of then did (plain SHA-256)."""
    store = await Store.connect(admin_dsn, KeyRing.load(keys_path))
    try:
        await store.schema.upgrade(until=18)
        prev = GENESIS
        for seq in range(1, rows + 1):
            row = sealed(AuditEntry(seq=seq, at=datetime.now(timezone.utc), actor="cli:ops", action="apikey.created",
                                    target_type="apikey", target_id=f"k{seq}", source="cli@host"), prev)
            await store.pool.execute(
                "INSERT INTO audit_log (seq, at, actor, action, target_type, target_id, source, details, prev_hash,"
                " hash) VALUES ($1, $2, $3, $4, $5, $6, $7, '{}', $8, $9)", row.seq, row.at, row.actor, row.action,
                row.target_type, row.target_id, row.source, row.prev_hash, row.hash)
            prev = row.hash
    finally:
        await store.close()


def test_the_service_refuses_to_start_with_a_key_file_that_holds_no_audit_key(stack, tmp_path):
    document = json.loads(stack.settings.keys_path.read_text())
    del document["audit"], document["audit_active"]
    (tmp_path / "keys.json").write_text(json.dumps(document))
    (tmp_path / "keys.json").chmod(0o600)
    stack.stop_service()
    try:
        with pytest.raises(RuntimeError, match="holds no audit key"):
            stack.start_service(MASKING_KEYS_FILE=str(tmp_path / "keys.json"))
    finally:
        stack.stop_service()
        stack.start_service()
