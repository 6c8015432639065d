"""Delivered webhooks are marked as a group commit (bridge/webhooks.py
`DeliveryMarks`): what is accepted while a mark is being written waits for the
next transaction, together; alone, an event is marked at once. The store is
faked here; tests/integration/test_webhook_notify.py marks real ones."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from bridge.store.errors import StoreUnavailable
from bridge.webhooks import DeliveryMarks

DESTINATION = {"host": "hooks.example", "country": "unknown"}


class Outbox:
    """Each `delivered` transaction: the ids it marked; the first is held until `release`."""

    def __init__(self, fail: bool = False):
        self.transactions: list[list[int]] = []
        self.ledger: list[list[int]] = []
        self.release, self.fail = asyncio.Event(), fail

    async def delivered(self, ids, also):
        self.transactions.append(ids)
        if len(self.transactions) == 1:
            await self.release.wait()
        if self.fail:
            raise StoreUnavailable("the database is down")
        await also("conn")


def fake_store(outbox: Outbox):
    async def webhooks_delivered(delivered, conn):
        assert conn == "conn"  # in the mark's transaction
        outbox.ledger.append([event["id"] for event, _ in delivered])

    return SimpleNamespace(outbox=outbox, disclosures=SimpleNamespace(webhooks_delivered=webhooks_delivered))


async def test_what_is_accepted_while_a_mark_is_written_is_marked_together_next():
    outbox = Outbox()
    marks = DeliveryMarks(fake_store(outbox))
    first = asyncio.create_task(marks.mark({"id": 1}, DESTINATION))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # its transaction is under way, held
    rest = [asyncio.create_task(marks.mark({"id": n}, DESTINATION)) for n in (2, 3, 4)]
    await asyncio.sleep(0.01)
    assert outbox.transactions == [[1]] and not first.done() and not any(t.done() for t in rest)

    outbox.release.set()
    await asyncio.wait_for(asyncio.gather(first, *rest), 5)
    assert outbox.transactions == [[1], [2, 3, 4]]
    assert outbox.ledger == outbox.transactions  # each event's ledger row in its mark's transaction

    await asyncio.wait_for(marks.mark({"id": 5}, DESTINATION), 5)  # alone again: at once, by itself
    assert outbox.transactions[-1] == [5]


async def test_a_failed_mark_fails_every_delivery_in_it_and_the_next_group_still_goes():
    outbox = Outbox(fail=True)
    marks = DeliveryMarks(fake_store(outbox))
    waiting = [asyncio.create_task(marks.mark({"id": n}, DESTINATION)) for n in (1, 2)]
    await asyncio.sleep(0.01)
    outbox.release.set()
    for task in waiting:
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(task, 5)
    outbox.fail = False
    await asyncio.wait_for(marks.mark({"id": 3}, DESTINATION), 5)
    assert outbox.transactions == [[1, 2], [3]] and outbox.ledger == [[3]]


async def test_a_delivery_given_up_on_does_not_stop_the_others_marks():
    outbox = Outbox()
    marks = DeliveryMarks(fake_store(outbox))
    first = asyncio.create_task(marks.mark({"id": 1}, DESTINATION))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(marks.mark({"id": 2}, DESTINATION))
    await asyncio.sleep(0)
    first.cancel()  # the dispatcher stops: its waiter goes, the transaction under way is let finish
    outbox.release.set()
    await asyncio.wait_for(second, 5)
    await marks.settle()
    assert outbox.transactions == [[1], [2]] and outbox.ledger == [[1], [2]]


async def test_a_stopping_dispatcher_waits_for_the_marks_under_way_and_queued():
    outbox = Outbox()
    marks = DeliveryMarks(fake_store(outbox))
    waiters = [asyncio.create_task(marks.mark({"id": 1}, DESTINATION))]
    await asyncio.sleep(0.01)
    waiters.append(asyncio.create_task(marks.mark({"id": 2}, DESTINATION)))
    await asyncio.sleep(0)
    for waiter in waiters:
        waiter.cancel()  # the dispatcher is cancelled while its first mark is held
    settling = asyncio.create_task(marks.settle())
    await asyncio.sleep(0.01)
    assert not settling.done()
    outbox.release.set()
    await asyncio.wait_for(settling, 5)
    assert outbox.ledger == [[1], [2]]  # both written, not cancelled half-way


async def test_a_writer_cancelled_with_the_loop_leaves_no_delivery_waiting_for_ever():
    outbox = Outbox()
    marks = DeliveryMarks(fake_store(outbox))
    first = asyncio.create_task(marks.mark({"id": 1}, DESTINATION))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(marks.mark({"id": 2}, DESTINATION))
    await asyncio.sleep(0)
    marks._writer.cancel()
    for waiter in (first, second):
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(waiter, 5)
    await asyncio.wait_for(marks.mark({"id": 3}, DESTINATION), 5)  # a new writer takes the next
    assert outbox.ledger[-1] == [3]
