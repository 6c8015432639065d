"""The audit trail on a real PostgreSQL: gapless under concurrency, written by
the operator's commands, and `masking audit verify` catching edits and deletions
(made as a superuser would, past the append-only trigger)."""
from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from types import SimpleNamespace

import pytest

from bridge.config import Settings
from bridge.privacy.audit import verify_chain
from bridge.auditing import audit_configuration
from bridge.store import Store
from bridge.store.audit import NewRow
from tests.integration.test_cli import masking
from tests.support.keys import keys_file, shared_keys
from tests.support.ports import free_port


@pytest.fixture
def operator(dsn, tmp_path):
    """What `masking` needs to run against this database (no Asterisk); no checkpoints yet."""
    return SimpleNamespace(env={"MASKING_DATABASE_URL": dsn, "MASKING_KEYS_FILE": str(keys_file()),
                                "MASKING_STATE_DIR": str(tmp_path)})


async def as_superuser(store: Store, sql: str) -> None:
    """What a DBA can do: switch the append-only trigger off for the session, then change rows."""
    async with store.pool.acquire() as conn:
        await conn.execute("SET session_replication_role = replica")
        try:
            await conn.execute(sql)
        finally:
            await conn.execute("RESET session_replication_role")


async def trail(store: Store, rows: int) -> list:
    return [await store.audit.append("cli:test", "recording.read", "recording", str(uuid.uuid4()), source="cli@test",
                              details={"n": n}) for n in range(rows)]


async def verify(operator, *args: str):
    return await asyncio.to_thread(masking, operator, "audit", "verify", *args)


# -- appending ------------------------------------------------------------------------------
async def test_fifty_concurrent_appends_make_a_gapless_valid_chain(store):
    await asyncio.gather(*(store.audit.append("service", "purge.run", "recordings", str(n), source="service@test")
                           for n in range(50)))

    rows = [row async for row in store.audit.walk(page=7)]
    assert [row.seq for row in rows] == list(range(1, 51))
    assert verify_chain(rows, mac=store.keys.audit_mac).ok
    assert {row.key_id for row in rows} == {store.keys.audit_active}


async def test_batches_and_single_appends_side_by_side_make_a_gapless_valid_chain(store):
    """A batch (a group of delivered webhooks, a listing's rows) takes the lock
    and reads the head once: its rows are consecutive, each sealed after the
    one before, and single appends racing it chain after or before it."""
    def batch(n: int) -> list[NewRow]:
        return [NewRow("service", "webhook.delivered", "webhook", "hooks.example", "service@test",
                       details={"batch": n, "i": i, "nested": {"z": 1, "a": [i]}}) for i in range(5)]

    results = await asyncio.gather(
        *(store.audit.append_rows(batch(n)) for n in range(10)),
        *(store.audit.append("service", "purge.run", "recordings", str(n), source="service@test") for n in range(20)))

    rows = [row async for row in store.audit.walk(page=7)]
    assert [row.seq for row in rows] == list(range(1, 71))
    assert verify_chain(rows, mac=store.keys.audit_mac).ok
    for entries in results[:10]:
        seqs = [entry.seq for entry in entries]
        assert seqs == list(range(seqs[0], seqs[0] + 5)), "a batch's rows are consecutive"
        assert [rows[s - 1] for s in seqs] == entries, "what append_rows returned is what was stored"


async def test_a_batch_commits_or_rolls_back_with_the_callers_transaction(store):
    class Refused(Exception):
        pass

    rows = [NewRow("service", "webhook.delivered", "webhook", "hooks.example", "service@test") for _ in range(3)]
    with pytest.raises(Refused):
        async with store.pool.acquire() as conn, conn.transaction():
            await store.audit.append_rows(rows, conn)
            raise Refused
    assert await store.audit.rows() == []
    assert await store.audit.append_rows([]) == []


async def test_an_audit_row_commits_or_rolls_back_with_the_callers_transaction(store):
    class Refused(Exception):
        pass

    with pytest.raises(Refused):
        async with store.pool.acquire() as conn, conn.transaction():
            await store.audit.append("cli:test", "subject.erased", "subject", "x", source="cli@test", conn=conn)
            raise Refused
    kept = await store.audit.append("cli:test", "subject.erased", "subject", "y", source="cli@test")

    assert [(row.seq, row.target_id) for row in await store.audit.rows()] == [(1, "y")]
    assert kept.seq == 1


# -- masking audit verify ------------------------------------------------------------------
async def test_verify_passes_on_a_clean_trail_and_prints_its_head(store, operator):
    rows = await trail(store, 3)
    result = await verify(operator)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("audit trail ok: 3 rows intact")
    assert f"head seq 3 hash {rows[-1].hash.hex()}" in result.stdout


@pytest.mark.parametrize(("tampering", "bad_seq", "problem"), [
    ("UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 3", 3, "edited"),
    ("DELETE FROM audit_log WHERE seq = 2", 2, "deleted"),
], ids=["a-row-edited-in-sql", "a-middle-row-deleted"])
async def test_verify_fails_naming_the_first_bad_seq_after(store, operator, tampering, bad_seq, problem):
    await trail(store, 5)
    await as_superuser(store, tampering)
    result = await verify(operator)
    assert result.returncode == 1
    assert f"broken at seq {bad_seq}" in result.stdout and problem in result.stdout


async def test_verify_against_an_anchored_head_catches_a_deleted_newest_row(store, operator):
    rows = await trail(store, 4)
    await as_superuser(store, "DELETE FROM audit_log WHERE seq = 4")
    plain = await verify(operator)
    anchored = await verify(operator, "--expect-head", rows[-1].hash.hex())
    still_there = await verify(operator, "--expect-head", rows[1].hash.hex())
    assert plain.returncode == 0, "a shorter chain is consistent in itself, with no checkpoint to say otherwise"
    assert "no checkpoint" in plain.stderr
    assert anchored.returncode == 1
    assert "broken at seq 4" in anchored.stdout and "deleted" in anchored.stdout
    assert still_there.returncode == 0
    assert (await verify(operator, "--expect-head", "not-hex")).returncode == 2


# -- the operator's changes ------------------------------------------------------------------
async def test_apikey_create_and_revoke_from_the_cli_are_audited_without_the_token(store, operator):
    created = await asyncio.to_thread(masking, operator, "apikeys", "create", "--name", "shop", "--scope", "audit")
    key = json.loads(created.stdout)
    revoked = await asyncio.to_thread(masking, operator, "apikeys", "revoke", key["prefix"])
    missing = await asyncio.to_thread(masking, operator, "apikeys", "revoke", key["prefix"])
    listed = await asyncio.to_thread(masking, operator, "audit", "list", "--json")

    assert (created.returncode, revoked.returncode, missing.returncode) == (0, 0, 1)
    entries = json.loads(listed.stdout)["entries"]
    assert [(e["action"], e["target_type"], e["target_id"]) for e in entries] == [
        ("apikey.revoked", "apikey", key["prefix"]), ("apikey.created", "apikey", key["prefix"])]
    assert entries[1]["details"] == {"name": "shop", "scopes": ["audit"]}
    for entry in entries:
        assert entry["actor"].startswith("cli:") and entry["source"].startswith("cli@")
    secret = key["token"].split("_", 2)[2]
    assert secret not in listed.stdout
    async with store.pool.acquire() as conn:
        assert secret not in str(await conn.fetch("SELECT * FROM audit_log"))


async def test_pool_changes_from_the_cli_are_audited_with_the_number_masked(store, operator):
    await asyncio.to_thread(masking, operator, "numbers", "add", "+6563009001")
    await asyncio.to_thread(masking, operator, "numbers", "retire", "+6563009001")
    table = await asyncio.to_thread(masking, operator, "audit", "list", "--action", "number.added")

    rows = await store.audit.list()
    assert [(r.action, r.target_id) for r in rows] == [("number.retired", "+65****9001"),
                                                       ("number.added", "+65****9001")]
    assert table.stdout.splitlines()[0].split()[:4] == ["seq", "at", "actor", "action"]
    assert "number.added" in table.stdout and "number.retired" not in table.stdout
    assert "6563009001" not in table.stdout


# -- configuration -----------------------------------------------------------------------------
async def test_a_start_with_changed_settings_writes_one_config_row_naming_them(store, dsn):
    settings = Settings(database_url=dsn, ari_password="s3cret-ari", webhook_secret="s3cret-hook",
                        webhook_url="https://shop.example/hook?token=s3cret-token")

    first = await audit_configuration(store, settings)
    unchanged = await audit_configuration(store, settings)
    changed = await audit_configuration(store, replace(settings, dial_timeout=45, ari_password="other",
                                                       webhook_url="https://shop.example/hook?token=new"))

    rows = await store.audit.list(action="config.changed")
    assert (first, unchanged, changed) == (True, False, True) and len(rows) == 2
    assert rows[0].details["changed"] == ["MASKING_DIAL_TIMEOUT", "MASKING_WEBHOOK_URL"]
    assert rows[0].details["settings"]["MASKING_DIAL_TIMEOUT"] == "45"
    assert (rows[0].actor, rows[0].target_type) == ("service", "host") and rows[0].source.startswith("service@")
    assert "s3cret" not in json.dumps([row.details for row in rows])


async def test_a_database_outage_never_stops_a_start():
    down = await Store.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing", shared_keys(), timeout=1)
    try:
        assert await audit_configuration(down, Settings()) is False
    finally:
        await down.close()
