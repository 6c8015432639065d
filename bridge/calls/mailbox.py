"""What asyncio.Queue does for one reader, in a list and one future.

Every call holds two of these for its whole length (its events, its row's
writes). An asyncio.Queue is three deques and an asyncio.Event another, each
deque 760 bytes before it holds anything: about 3 KiB a call of the live
memory `bench.memory` measured per active call, for queues that rarely hold
more than two items.
"""
from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class Mailbox(Generic[T]):
    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    def peek(self) -> T:
        return self._items[0]

    def get_nowait(self) -> T:
        """The oldest item (IndexError if none)."""
        return self._items.pop(0)

    async def get(self, timeout: float | None = None) -> T:
        """The oldest item, once there is one (one reader at a time); TimeoutError
        after `timeout` seconds without one. A timer on the waiter, not a
        timeout scope: a call waits this way for each of its events, and the
        scope costs several Python calls more per wait."""
        loop = asyncio.get_running_loop()
        timer = loop.call_later(timeout, self._expire) if timeout is not None else None
        try:
            while not self._items:
                self._waiter = loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
        finally:
            if timer is not None:
                timer.cancel()
        return self._items.pop(0)

    def _expire(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(TimeoutError())
