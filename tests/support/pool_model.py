"""The driver the pool property tests share (test_pool_properties, test_caller_id_pool):
a fresh pool on a real PostgreSQL, a random sequence of creates, closes and
expiries, and after each step the invariants that hold whatever the model.

Each test keeps its own model of the rules and its own `create` step (what it
expects to be allocated); this runs the sequence, ends sessions, and checks.
"""
from __future__ import annotations

import uuid
from typing import Any, Awaitable, Callable, Protocol

from hypothesis import strategies as st

from bridge.store import Store
from tests.integration.conftest import empty
from tests.support.keys import shared_keys

# close or expire the (i mod live)th live session
ENDINGS = (st.tuples(st.just("close"), st.integers(0, 20), st.just(0)),
           st.tuples(st.just("expire"), st.integers(0, 20), st.just(0)))


class PoolModel(Protocol):
    live: dict[str, Any]  # session id -> what it holds

    def end(self, session_id: str) -> None:
        """The session closed or expired: what it held is ended (and quarantined)."""


Create = Callable[[Store, str, int, int], Awaitable[None]]  # (store, kind, i, j): one create, checked
Check = Callable[[Store], Awaitable[None]]


async def run_sequence(dsn: str, numbers: list[str], reserved: str, model: PoolModel, ops, create: Create,
                       check: Check | None = None) -> None:
    """Run `ops` ((kind, i, j) tuples) on a pool of `numbers` and one `reserved`
    number; kinds other than close/expire go to `create`. After each step the
    shared invariants hold, and `check`'s own."""
    store = await Store.connect(dsn, shared_keys())
    try:
        await empty(store)
        for number in numbers:
            await store.numbers.add(number)
        await store.numbers.add(reserved, reserved=True)
        for kind, i, j in ops:
            if kind not in ("close", "expire"):
                await create(store, kind, i, j)
            elif model.live:
                session_id = sorted(model.live)[i % len(model.live)]
                await end_session(store, session_id, kind)
                model.end(session_id)
            await check_invariants(store, model, reserved)
            if check is not None:
                await check(store)
    finally:
        await store.close()


async def end_session(store: Store, session_id: str, how: str) -> None:
    if how == "close":
        await store.sessions.close(uuid.UUID(session_id))
        return
    async with store.pool.acquire() as conn:
        await conn.execute("UPDATE masking_sessions SET expires_at = now() - interval '1 second',"
                           " created_at = now() - interval '2 seconds' WHERE id = $1::uuid", session_id)
    await store.sessions.expire_due()


async def check_invariants(store: Store, model: PoolModel, reserved: str) -> None:
    async with store.pool.acquire() as conn:
        live = await conn.fetch("SELECT virtual_number, number_hash FROM session_participants WHERE live")
        statuses = dict(await conn.fetch("SELECT id::text, status FROM masking_sessions"))
    pairs = [(r["virtual_number"], r["number_hash"]) for r in live]
    assert len(pairs) == len(set(pairs)), "a participant holds one number in two live sessions"
    assert {sid for sid, status in statuses.items() if status == "active"} == set(model.live)
    assert all(number != reserved for number, _ in pairs), "a reserved number was auto-allocated"
