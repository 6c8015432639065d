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
from bridge.privacy.audit import Problem
from bridge.store import Store
from tests.integration.conftest import query
from tests.integration.test_cli import masking
from tests.support.keys import shared_keys

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
