"""Personal data at rest: what a database dump, an old schema or a key rotation reveals.

The numbers of participants must not be readable from the database alone: a
`pg_dump` after real calls is searched for every spelling of them, in the
dump's text and inside every binary value it holds.
"""
from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import urllib.request
import uuid


from bridge.privacy.crypto import KeyRing
from bridge.store import Store
from tests.integration.conftest import new_parties, query, wait_for_call_row
from tests.support.keys import shared_keys
from tests.support.stack import ADMIN_DSN, create_database, drop_database


def number_spellings(number: str) -> list[str]:
    """E.164, digits only, national (Singapore numbers: the last 8 digits)."""
    digits = number.lstrip("+")
    return [number, digits, digits[-8:]]


def leaks(dump: str, numbers: list[str]) -> list[str]:
    """Where any spelling of `numbers` appears in a plain-format dump: in its
    text (binary values taken out), inside any binary value, or base64-encoded."""
    binary = [bytes.fromhex(h) for h in re.findall(r"\\\\x([0-9a-f]+)", dump)]
    text = re.sub(r"\\\\x[0-9a-f]+", "", dump)
    found = []
    for number in numbers:
        for spelling in number_spellings(number):
            encoded = spelling.encode()
            if spelling in text:
                found.append(f"{spelling} in text")
            if any(encoded in blob or spelling.encode("utf-16-le") in blob for blob in binary):
                found.append(f"{spelling} in a binary value")
            if base64.b64encode(encoded).decode().rstrip("=") in text:
                found.append(f"{spelling} base64-encoded")
    return found


def pg_dump(dsn: str) -> str:
    return subprocess.run(["pg_dump", "--no-owner", f"--dbname={dsn}"], check=True, capture_output=True,
                          text=True).stdout


def test_a_database_dump_after_real_calls_holds_no_participant_number(stack, place_call):
    parties = new_parties(stack)
    call = place_call(parties.a, parties.virtual_number, uas="uas_answer.xml", talk_ms=2000)
    assert call.counterpart.succeeded, call.counterpart.output
    row = wait_for_call_row(stack, parties.virtual_number, with_recording=True)
    assert row["disposition"] == "answered"
    # A caller the session does not know is recorded as rejected, number and all?
    stranger = "+6597771234"
    place_call(stranger, parties.virtual_number, uac="uac_rejected.xml",
               uac_values={"final_status": 403, "tag": "stranger"})
    # And a session made over the API with an Idempotency-Key (whose request hash is kept).
    via_api = ("+6591239876", "+6581239876")
    token = asyncio.run(_api_key(stack))
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.settings.http_port}/v1/sessions", method="POST",
        data=json.dumps({"participant_a": via_api[0], "participant_b": via_api[1], "purpose": "delivery_order",
                         "virtual_number": parties.virtual_number.replace("6561", "6562")}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                 "Idempotency-Key": uuid.uuid4().hex})
    asyncio.run(_add_number(stack, parties.virtual_number.replace("6561", "6562")))
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 201
    assert query(stack.dsn, "SELECT count(*) AS n FROM idempotency_keys")[0]["n"] >= 1

    dump = pg_dump(stack.dsn)

    assert "masking_sessions" in dump and parties.virtual_number in dump  # the dump is real and complete
    assert leaks(dump, [parties.a, parties.b, stranger, *via_api]) == []


def test_the_leak_search_would_find_a_number_stored_in_clear_or_in_bytes():
    dump = "COPY t (a, b) FROM stdin;\n1\t\\\\x2b36353931323334353637\n2\tcall 6581234567\n"
    assert leaks(dump, ["+6591234567"]) == ["+6591234567 in a binary value", "6591234567 in a binary value",
                                            "91234567 in a binary value"]
    assert "6581234567 in text" in leaks(dump, ["+6581234567"])


def test_upgrading_seals_numbers_stored_in_clear_and_lookups_still_work():
    name = f"masking_upgrade_{uuid.uuid4().hex[:8]}"
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    asyncio.run(create_database(name))
    try:
        asyncio.run(_upgrade_from_clear(dsn))
        dump = pg_dump(dsn)
        assert leaks(dump, ["+6591110001", "+6581110001"]) == []
    finally:
        asyncio.run(drop_database(name))


async def _upgrade_from_clear(dsn: str) -> None:
    store = await Store.connect(dsn, shared_keys())
    try:
        await store.schema.upgrade(until=4)  # the schema before numbers were sealed
        session_id = uuid.uuid4()
        async with store.pool.acquire() as conn:
            await conn.execute("INSERT INTO virtual_numbers (number) VALUES ('+6561110001')")
            await conn.execute(
                "INSERT INTO masking_sessions (id, virtual_number, participant_a, participant_b, record, expires_at,"
                " ttl_seconds) VALUES ($1, '+6561110001', '+6591110001', '+6581110001', true,"
                " now() + interval '1 hour', 3600)", session_id)
            await conn.execute(
                "INSERT INTO session_participants (session_id, role, virtual_number, number) VALUES"
                " ($1, 'a', '+6561110001', '+6591110001'), ($1, 'b', '+6561110001', '+6581110001')", session_id)

        assert "0005_privacy.sql" in await store.schema.upgrade()

        lookup = await store.sessions.route_lookup("+6561110001", "+6581110001")
        assert [s.id for s in lookup.sessions] == [session_id]
        session = lookup.sessions[0]
        assert (session.participant_a, session.participant_b, session.purpose) == \
            ("+6591110001", "+6581110001", "unspecified")
        async with store.pool.acquire() as conn:
            columns = {r["column_name"] for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'masking_sessions'")}
        assert "participant_a" not in columns and "participant_a_sealed" in columns
    finally:
        await store.close()


def test_rotating_keys_reseals_every_session_and_the_old_key_can_then_go(dsn, tmp_path):
    path = tmp_path / "keys.json"
    ring = KeyRing.generate()
    ring.save(path)

    async def scenario():
        store = await Store.connect(dsn, KeyRing.load(path))
        try:
            async with store.pool.acquire() as conn:
                await conn.execute("TRUNCATE idempotency_keys, session_participants, masking_sessions,"
                                   " virtual_numbers CASCADE")
            await store.numbers.add("+6561120001")
            from bridge.sessions.models import SessionRequest
            created, _ = await store.sessions.create(SessionRequest(
                "+6591120001", "+6581120001", ttl_seconds=600, record=False, purpose="delivery_order"))
            old = ring.active_id
            rotated = KeyRing.load(path)
            new = rotated.add_key()
            rotated.save()
            store.keys.reload()
            assert await store.sessions.rows_by_key() == {old: 1}
            assert await store.sessions.reseal() == 1 and await store.sessions.reseal() == 0
            assert await store.sessions.rows_by_key() == {new: 1}
            del rotated.keys[old]
            rotated.save()
            store.keys.reload()
            session = await store.sessions.get(created.id)
            assert (session.participant_a, session.participant_b) == ("+6591120001", "+6581120001")
            assert [s.id for s in (await store.sessions.route_lookup("+6561120001", "+6591120001")).sessions] == [created.id]
        finally:
            await store.close()

    asyncio.run(scenario())


async def _api_key(stack) -> str:
    store = await Store.connect(stack.dsn, stack.keys)
    try:
        token, _ = await store.api_keys.create("privacy-test", ["sessions"])
        return token
    finally:
        await store.close()


async def _add_number(stack, number: str) -> None:
    store = await Store.connect(stack.dsn, stack.keys)
    try:
        await store.numbers.add(number)
    finally:
        await store.close()
