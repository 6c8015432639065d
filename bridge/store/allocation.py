"""Which virtual number(s) a new session takes, in its creating transaction.

The ranking is pure (bridge/sessions/pool.py); here the candidates are read
under the creator's per-participant advisory locks, and the partial unique
index on live (virtual number, participant) rows stays the guarantee
underneath. Under the per-participant caller ID policy A's row holds X_A and
B's row X_B; shared (PIN) numbers are chosen in bridge/store/pins.py.
"""
from __future__ import annotations

import uuid

import asyncpg

from bridge.privacy.crypto import KeyRing
from bridge.sessions.caller_id import PER_PARTICIPANT, numbers_problem
from bridge.sessions.models import SessionRequest
from bridge.sessions.pool import Candidate, StickyPreference, choose_number, choose_pair
from bridge.store.errors import NumberUnavailable, PoolExhausted
from bridge.store.numbers import allocatable_count, check_assignable, free_numbers


async def allocate_shared(conn: asyncpg.Connection, keys: KeyRing, request: SessionRequest) -> str:
    """One number both participants dial and see."""
    # Every lookup key's hash: rows not re-hashed yet still count (bridge/store/lookup_keys.py).
    participants = keys.lookup_hashes(request.participant_a) + keys.lookup_hashes(request.participant_b)
    candidates = await free_numbers(conn, participants, participants, request.quarantine_seconds)
    number = choose_number(candidates, request.participant_a, request.participant_b,
                           StickyPreference(request.sticky), request.country_match)
    if number is None:
        raise PoolExhausted(len(candidates) - sum(c.quarantined for c in candidates) if candidates else 0,
                            await allocatable_count(conn))
    return number


async def allocate_pair(conn: asyncpg.Connection, keys: KeyRing, request: SessionRequest) -> tuple[str, str]:
    """(X_A, X_B) for a per-participant session: the explicit ones as given
    (checked by the caller), the others chosen from the pool."""
    if request.virtual_number_b:
        await check_number_b(conn, request.virtual_number_b, request.virtual_number)
    hash_a, hash_b = keys.lookup_hashes(request.participant_a), keys.lookup_hashes(request.participant_b)
    sides = []
    for explicit, holder in ((request.virtual_number, hash_a), (request.virtual_number_b, hash_b)):
        if explicit:
            sides.append([Candidate(explicit, None, None, False, False)])
            continue
        sides.append(await free_numbers(conn, holder, hash_a + hash_b, request.quarantine_seconds))
    pair = choose_pair(sides[0], sides[1], request.participant_a, request.participant_b,
                       StickyPreference(request.sticky), request.country_match)
    if pair is None:
        # Free for the participant with fewest; a pair needs two different ones.
        raise PoolExhausted(min(sum(not c.quarantined for c in side) for side in sides),
                            await allocatable_count(conn))
    return pair


async def check_number_b(conn: asyncpg.Connection, number: str, number_a: str | None) -> None:
    if problem := numbers_problem(PER_PARTICIPANT, number_a, number):
        raise NumberUnavailable(problem, field="virtual_number_b")
    await check_assignable(conn, number, field="virtual_number_b")


async def set_number_b(conn: asyncpg.Connection, session_id: uuid.UUID, number_b: str) -> asyncpg.Record:
    """Give a new session its per-participant policy and B's number; returns the row."""
    return await conn.fetchrow(
        "UPDATE masking_sessions SET caller_id_policy = $2, virtual_number_b = $3 WHERE id = $1 RETURNING *",
        session_id, PER_PARTICIPANT, number_b)
