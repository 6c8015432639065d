"""Allocation rules as properties: random create/close/expire sequences on a
real PostgreSQL, checked against a small model of the rules after each step."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.sessions.models import SessionRequest
from bridge.store.errors import NumberInUse, PoolExhausted
from tests.support.pool_model import ENDINGS, run_sequence

POOL = ["+6560002001", "+6560002002", "+6560002003"]
RESERVED = "+6560002009"
CUSTOMERS = ["+6592000001", "+6592000002", "+6592000003"]
DRIVERS = ["+6582000001", "+6582000002"]

operation = st.one_of(
    st.tuples(st.just("create"), st.integers(0, len(CUSTOMERS) - 1), st.integers(0, len(DRIVERS) - 1)),
    *ENDINGS,
)


@dataclass
class Model:
    """What the rules say: live holdings, and ended ones for quarantine."""

    live: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # session id -> (number, a, b)
    ended: list[tuple[str, str, str]] = field(default_factory=list)  # (number, a, b), quarantine is unbounded
    last_used: dict[str, int] = field(default_factory=dict)
    clock: int = 0

    def eligible(self, a: str, b: str) -> list[str]:
        def held_live(number):
            return any(n == number and ({a, b} & {x, y}) for n, x, y in self.live.values())

        def quarantined(number):
            return any(n == number and ({a, b} & {x, y}) and {x, y} != {a, b} for n, x, y in self.ended)

        return [n for n in POOL if not held_live(n) and not quarantined(n)]

    def least_recently_used(self, candidates: list[str]) -> str:
        return min(candidates, key=lambda n: (self.last_used.get(n, -1), n))

    def end(self, session_id: str) -> None:
        self.ended.append(self.live.pop(session_id))


async def run(ops, dsn: str) -> None:
    model = Model()

    async def create(store, kind, i, j):
        a, b = CUSTOMERS[i], DRIVERS[j]
        expected = model.eligible(a, b)
        try:
            session, _ = await store.sessions.create(SessionRequest(a, b, ttl_seconds=3600, record=False, purpose="delivery_order",
                                                                   quarantine_seconds=86400))
        except (PoolExhausted, NumberInUse):
            assert not expected, f"refused although {expected} were free for the pair"
            return
        assert expected, f"allocated {session.virtual_number} although nothing was eligible"
        assert session.virtual_number == model.least_recently_used(expected)
        model.live[str(session.id)] = (session.virtual_number, a, b)
        model.clock += 1
        model.last_used[session.virtual_number] = model.clock

    await run_sequence(dsn, POOL, RESERVED, model, ops, create)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=25))
def test_allocation_follows_the_pool_rules_over_any_sequence(dsn, ops):
    asyncio.run(run(ops, dsn))
