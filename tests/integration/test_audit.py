"""The audit trail on a real PostgreSQL: gapless under concurrency, committed with the change it records."""
from __future__ import annotations

import asyncio

import pytest

from bridge.privacy.audit import verify_chain


# -- appending ------------------------------------------------------------------------------
async def test_fifty_concurrent_appends_make_a_gapless_valid_chain(store):
    await asyncio.gather(*(store.audit("service", "purge.run", "recordings", str(n), source="service@test")
                           for n in range(50)))

    rows = [row async for row in store.walk_audit(page=7)]
    assert [row.seq for row in rows] == list(range(1, 51))
    assert verify_chain(rows).ok


async def test_an_audit_row_commits_or_rolls_back_with_the_callers_transaction(store):
    class Refused(Exception):
        pass

    with pytest.raises(Refused):
        async with store.pool.acquire() as conn, conn.transaction():
            await store.audit("cli:test", "subject.erased", "subject", "x", source="cli@test", conn=conn)
            raise Refused
    kept = await store.audit("cli:test", "subject.erased", "subject", "y", source="cli@test")

    assert [(row.seq, row.target_id) for row in await store.audit_rows()] == [(1, "y")]
    assert kept.seq == 1
