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
