"""The store's part of the per-participant caller ID policy: two numbers per session.

Mixed into `Store` (which provides `keys`). `create_session` calls these
inside its transaction, under its per-participant advisory locks; the partial
unique index on live (virtual number, participant) rows stays the guarantee
underneath: with this policy A's row holds X_A and B's row X_B.
"""
from __future__ import annotations

import uuid

from bridge.sessions.caller_id import PER_PARTICIPANT, numbers_problem
from bridge.sessions.models import SessionRequest
from bridge.sessions.pool import Candidate, StickyPreference, choose_pair


class CallerIdQueries:
    """Store methods for sessions whose participants each have their own number."""

    async def _allocate_pair(self, conn, request: SessionRequest) -> tuple[str, str]:
        """(X_A, X_B) for a per-participant session: the explicit ones as given
        (checked by the caller), the others chosen from the pool."""
        from bridge.store import PoolExhausted, free_numbers  # the store package imports this module

        if request.virtual_number_b:
            await self._check_number_b(conn, request.virtual_number_b, request.virtual_number)
        hash_a, hash_b = self.keys.lookup_hash(request.participant_a), self.keys.lookup_hash(request.participant_b)
        sides = []
        for explicit, holder in ((request.virtual_number, hash_a), (request.virtual_number_b, hash_b)):
            if explicit:
                sides.append([Candidate(explicit, None, None, False, False)])
                continue
            sides.append(await free_numbers(conn, [holder], [hash_a, hash_b], request.quarantine_seconds))
        pair = choose_pair(sides[0], sides[1], request.participant_a, request.participant_b,
                           StickyPreference(request.sticky), request.country_match)
        if pair is None:
            allocatable = await conn.fetchval(
                "SELECT count(*) FROM virtual_numbers WHERE status = 'active' AND NOT reserved")
            # Free for the participant with fewest; a pair needs two different ones.
            raise PoolExhausted(min(sum(not c.quarantined for c in side) for side in sides), allocatable)
        return pair

    async def _check_number_b(self, conn, number: str, number_a: str | None) -> None:
        from bridge.store import NumberUnavailable, check_assignable  # the store package imports this module

        if problem := numbers_problem(PER_PARTICIPANT, number_a, number):
            raise NumberUnavailable(problem, field="virtual_number_b")
        await check_assignable(conn, number, field="virtual_number_b")

    async def _set_number_b(self, conn, session_id: uuid.UUID, number_b: str):
        """Give a new session its per-participant policy and B's number; returns the row."""
        return await conn.fetchrow(
            "UPDATE masking_sessions SET caller_id_policy = $2, virtual_number_b = $3 WHERE id = $1 RETURNING *",
            session_id, PER_PARTICIPANT, number_b)
