"""Delivered webhooks are marked together (bridge/webhooks.py `DeliveryMarks`):
what a claimed batch delivered, in one transaction with its ledger rows; a
write that fails drops nothing silently and never raises into the sender.
The store is faked here; tests/integration/test_webhook_notify.py marks real ones."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from bridge.store.errors import StoreUnavailable
from bridge.webhooks import DeliveryMarks

DESTINATION = {"host": "hooks.example", "country": "unknown"}


class Outbox:
    """Each `delivered` transaction: the ids it marked; `hold` keeps one open until set."""

    def __init__(self, fail: Exception | None = None):
        self.transactions: list[list[int]] = []
        self.ledger: list[list[int]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.fail = fail

    async def delivered(self, ids, also):
        self.transactions.append(ids)
        await self.hold.wait()
        if self.fail is not None:
            raise self.fail
        await also("conn")


def fake_store(outbox: Outbox):
    async def webhooks_delivered(delivered, conn):
        assert conn == "conn"  # in the mark's transaction
        outbox.ledger.append([event["id"] for event, _ in delivered])

    return SimpleNamespace(outbox=outbox, disclosures=SimpleNamespace(webhooks_delivered=webhooks_delivered))


async def test_what_was_accepted_is_marked_in_one_transaction_with_its_ledger_rows():
    outbox = Outbox()
    marks = DeliveryMarks(fake_store(outbox))
    await marks.write()  # nothing accepted: no transaction
    for n in (1, 2, 3):
        marks.add({"id": n}, DESTINATION)
    await marks.write()
    marks.add({"id": 4}, DESTINATION)
    await marks.write()
    assert outbox.transactions == [[1, 2, 3], [4]] and outbox.ledger == outbox.transactions


async def test_a_write_that_fails_is_not_retried_and_does_not_raise():
    for failure in (StoreUnavailable("the database is down"), RuntimeError("deadlock")):
        outbox = Outbox(fail=failure)
        marks = DeliveryMarks(fake_store(outbox))
        marks.add({"id": 1}, DESTINATION)
        await marks.write()  # logged; the events' claims expire and they are sent again
        outbox.fail = None
        marks.add({"id": 2}, DESTINATION)
        await marks.write()
        assert outbox.transactions == [[1], [2]] and outbox.ledger == [[2]]


async def test_a_write_cancelled_half_way_keeps_its_group_for_the_last_write():
    outbox = Outbox()
    outbox.hold.clear()
    marks = DeliveryMarks(fake_store(outbox))
    marks.add({"id": 1}, DESTINATION)
    writing = asyncio.create_task(marks.write())
    await asyncio.sleep(0.01)
    marks.add({"id": 2}, DESTINATION)  # accepted meanwhile
    writing.cancel()  # the dispatcher stops
    await asyncio.gather(writing, return_exceptions=True)
    outbox.hold.set()
    await marks.write()  # its `finally`
    assert outbox.transactions == [[1], [1, 2]] and outbox.ledger == [[1, 2]]


async def test_marks_are_overdue_once_an_acceptance_waited_and_two_writers_write_them_once(monkeypatch):
    monkeypatch.setattr("bridge.webhooks.MARK_WITHIN", 0.05)
    outbox = Outbox()
    marks = DeliveryMarks(fake_store(outbox))
    assert not marks.overdue()
    marks.add({"id": 1}, DESTINATION)
    assert not marks.overdue()
    await asyncio.sleep(0.1)
    assert marks.overdue()  # a slow receiver's session holds the batch: write the others' now
    outbox.hold.clear()
    both = asyncio.gather(marks.write(), marks.write())  # two sessions found them overdue
    await asyncio.sleep(0.01)
    marks.add({"id": 2}, DESTINATION)  # accepted while the first write runs
    outbox.hold.set()
    await both
    assert outbox.transactions == [[1], [2]] and not marks.overdue()
