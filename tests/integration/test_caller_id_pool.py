"""The pool rules with both caller ID policies, as properties: random sequences of
shared and per-participant creates, closes and expiries on a real PostgreSQL,
checked after each step against a small model in which every number is held
by a holder (with a shared number both participants hold it)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.clock import utcnow
from bridge.sessions.models import SessionRequest
from bridge.sessions.resolve import Connect, resolve_route
from bridge.store.errors import NumberInUse, PoolExhausted
from tests.support.pool_model import ENDINGS, run_sequence

POOL = ["+6560004001", "+6560004002", "+6560004003"]
RESERVED = "+6560004009"
CUSTOMERS = ["+6592000011", "+6592000012", "+6592000013"]
DRIVERS = ["+6582000011", "+6582000012"]

operation = st.one_of(
    st.tuples(st.sampled_from(["shared", "per_participant"]), st.integers(0, len(CUSTOMERS) - 1),
              st.integers(0, len(DRIVERS) - 1)),
    *ENDINGS,
)


@dataclass
class Model:
    """Holdings (number, holder, pair): live ones per session, and ended ones (quarantine is unbounded)."""

    live: dict[str, list[tuple[str, str, frozenset]]] = field(default_factory=dict)
    ended: list[tuple[str, str, frozenset]] = field(default_factory=list)
    last_used: dict[str, int] = field(default_factory=dict)
    clock: int = 0

    def free_for(self, holder: str, pair: frozenset) -> list[str]:
        def held_live(number):
            return any(n == number and h == holder for held in self.live.values() for n, h, _ in held)

        def quarantined(number):
            return any(n == number and h == holder and p != pair for n, h, p in self.ended)

        return sorted((n for n in POOL if not held_live(n) and not quarantined(n)), key=self.recency)

    def end(self, session_id: str) -> None:
        self.ended.extend(self.live.pop(session_id))

    def recency(self, number: str):
        return self.last_used.get(number, -1), number

    def expected(self, policy: str, a: str, b: str) -> tuple[str, str] | None:
        """The numbers the rules give (X_A, X_B; the same one twice when shared), or None."""
        pair = frozenset((a, b))
        free_a, free_b = self.free_for(a, pair), self.free_for(b, pair)
        if policy == "shared":
            both = [n for n in free_a if n in free_b]
            return (both[0], both[0]) if both else None
        for x_a in free_a:
            others = [n for n in free_b if n != x_a]
            if others:
                return x_a, others[0]
        return None


async def run(ops, dsn: str) -> None:
    model = Model()

    async def create(store, kind, i, j):
        a, b = CUSTOMERS[i], DRIVERS[j]
        expected = model.expected(kind, a, b)
        try:
            session, _ = await store.sessions.create(SessionRequest(
                a, b, ttl_seconds=3600, record=False, purpose="delivery_order", quarantine_seconds=86400,
                caller_id_policy=kind))
        except (PoolExhausted, NumberInUse):
            assert expected is None, f"{kind} refused although {expected} were free"
            return
        got = (session.virtual_number, session.virtual_number_b or session.virtual_number)
        assert got == expected, f"{kind}: allocated {got}, the rules say {expected}"
        pair = frozenset((a, b))
        model.live[str(session.id)] = [(got[0], a, pair), (got[1], b, pair)]
        model.clock += 1
        for number in set(got):
            model.last_used[number] = model.clock

    async def routes(store):
        # Each holder's number reaches their live session, and its counterpart.
        for session_id, held in model.live.items():
            for (number, holder, _), (_, counterpart, _) in zip(held, reversed(held)):
                route = resolve_route(await store.sessions.route_lookup(number, holder), holder, utcnow())
                assert isinstance(route, Connect) and str(route.session.id) == session_id, (number, route)
                assert route.counterpart == counterpart

    await run_sequence(dsn, POOL, RESERVED, model, ops, create, routes)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=25))
def test_both_policies_follow_the_pool_rules_over_any_sequence(dsn, ops):
    asyncio.run(run(ops, dsn))
