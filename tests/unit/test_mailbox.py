"""A call's mailbox: asyncio.Queue's behaviour for one reader (bridge/calls/mailbox.py)."""
import asyncio

import pytest

from bridge.calls.mailbox import Mailbox


async def test_items_come_out_in_order_and_a_reader_waits_for_the_next():
    box: Mailbox[int] = Mailbox()
    box.put_nowait(1)
    box.put_nowait(2)
    assert (await box.get(), box.get_nowait()) == (1, 2) and box.empty()
    reader = asyncio.create_task(box.get())
    await asyncio.sleep(0)
    assert not reader.done()
    box.put_nowait(3)
    assert await reader == 3


async def test_a_get_that_timed_out_loses_nothing_put_after_it():
    box: Mailbox[str] = Mailbox()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await box.get()
    box.put_nowait("late")
    assert box.peek() == "late" and await box.get() == "late"


def test_an_empty_mailbox_has_nothing_to_take():
    with pytest.raises(IndexError):
        Mailbox().get_nowait()


async def test_a_get_with_its_own_timeout_gives_up_then_loses_nothing_and_leaves_no_timer():
    box: Mailbox[str] = Mailbox()
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        await box.get(0.01)
    box.put_nowait("late")
    assert await box.get(5.0) == "late"
    reader = asyncio.create_task(box.get(5.0))
    await asyncio.sleep(0)
    box.put_nowait("in time")
    assert await reader == "in time"
    # Neither finished wait leaves its 5 s timer armed on the loop.
    assert not [h for h in loop._scheduled if not h.cancelled() and h.when() > loop.time() + 1]


async def test_a_cancelled_get_with_a_timeout_keeps_what_comes_after():
    box: Mailbox[int] = Mailbox()
    reader = asyncio.create_task(box.get(5.0))
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    box.put_nowait(7)
    assert await box.get(0.1) == 7
