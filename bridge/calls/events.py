"""A call's own view of ARI events: the channels it owns, and waits on them."""
from __future__ import annotations

import time
from typing import Callable

from bridge.ari import AriClient, AriError, Event, EventRouter
from bridge.calls.mailbox import Mailbox
from bridge.logs import get_logger

log = get_logger("bridge.calls")

# ChannelVanished is ours: a leg found missing on reconnect (Asterisk restarted,
# or it hung up while we were disconnected).
GONE_EVENTS = frozenset({"StasisEnd", "ChannelDestroyed", "ChannelHangupRequest", "ChannelVanished"})

# Every event type a call (or the service) waits on or reads: the service asks
# Asterisk for these and no others (`AriClient.filter_events`).
EVENTS_USED = frozenset({
    "StasisStart", "StasisEnd", "ChannelDestroyed", "ChannelHangupRequest", "ChannelDtmfReceived", "Dial",
    "PlaybackFinished", "PlaybackFailed", "RecordingStarted", "RecordingFinished", "RecordingFailed",
})


async def ask_for_events_used(ari: AriClient) -> None:
    """At every connection: the application's filter lives in Asterisk, which
    forgets it when the application goes. Without it, calls work as well."""
    try:
        await ari.filter_events(EVENTS_USED)
    except AriError as exc:
        log.warning("ari.event_filter_refused", status=exc.status)


class CallEvents:
    """Events for the channels one call owns, and what they have told so far."""

    def __init__(self, router: EventRouter):
        self.router = router
        self.queue: Mailbox[Event] = Mailbox()
        self.channels: set[str] = set()
        self.gone: dict[str, int | None] = {}  # channel id -> hangup cause (if known)
        self.gone_order: list[str] = []
        self.vanished: set[str] = set()  # legs that went without a hangup we saw
        self.soft_hangups: dict[str, int] = {}  # channel id -> AST_SOFTHANGUP_* flags Asterisk gave
        # Recordings Asterisk said ended, whoever was waiting when it did (a wait for a
        # hangup may take the RecordingFinished that a wait for the recording then misses).
        self.recordings_ended: set[str] = set()
        # Bound once: the module's logger is a proxy that binds anew at each use,
        # and every event of the call is logged (a no-op below debug).
        self.log = log.bind()

    def watch(self, channel_id: str) -> None:
        """Own `channel_id`; call before creating it so no event is missed."""
        self.channels.add(channel_id)
        self.router.register(channel_id, self.queue)

    def note_gone(self, channel_id: str) -> None:
        """`channel_id` hung up (its cause, if any, comes with its events)."""
        if channel_id not in self.gone:
            self.gone[channel_id] = None
            self.gone_order.append(channel_id)

    def close(self) -> None:
        for channel_id in self.channels:
            self.router.unregister(channel_id)

    def is_gone(self, channel_id: str) -> bool:
        return channel_id in self.gone

    def _note(self, event: Event) -> None:
        """Track hangups (and ended recordings) whatever the caller is waiting for."""
        if event.type in ("RecordingFinished", "RecordingFailed") and event.recording_name:
            self.recordings_ended.add(event.recording_name)
        channel = event.channel
        if channel is None or channel.id not in self.channels:
            return
        if event.soft_hangup:
            self.soft_hangups[channel.id] = self.soft_hangups.get(channel.id, 0) | event.soft_hangup
        if event.type in GONE_EVENTS:
            if event.type == "ChannelVanished" and channel.id not in self.gone:
                self.vanished.add(channel.id)
            self.note_gone(channel.id)
            if event.cause and not self.gone[channel.id]:
                self.gone[channel.id] = event.cause

    async def wait_for(self, match: Callable[[Event], bool], timeout: float,
                       stop_if_gone: tuple[str, ...] = ()) -> Event | None:
        """The first event that matches; None on timeout or when a channel in
        `stop_if_gone` hangs up first."""
        deadline = time.monotonic() + timeout
        while True:
            if any(self.is_gone(c) for c in stop_if_gone):
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if self.queue.empty():
                # Not asyncio.wait_for: that wraps the get in a task of its
                # own, four turns of the loop per event instead of one.
                try:
                    event = await self.queue.get(None if remaining == float("inf") else remaining)
                except TimeoutError:
                    return None
            else:
                event = self.queue.get_nowait()
            self._note(event)
            self.log.debug("ari.event", type=event.type, channel_id=event.channel.id if event.channel else None,
                      dialstatus=event.dialstatus, cause=event.cause)
            if match(event):
                return event

    async def wait_gone(self, channel_ids: tuple[str, ...], timeout: float) -> str | None:
        """Wait until any of `channel_ids` hangs up; return which, or None on timeout."""
        for channel_id in self.gone_order:
            if channel_id in channel_ids:
                return channel_id
        event = await self.wait_for(
            lambda e: e.channel is not None and e.channel.id in channel_ids and e.type in GONE_EVENTS,
            timeout,
        )
        return event.channel.id if event else None

    async def settle_causes(self, channel_ids: tuple[str, ...], timeout: float = 1.0) -> None:
        """Give ChannelDestroyed (which carries the cause) a moment to arrive."""

        def settled(_event: Event | None = None) -> bool:
            return all(self.gone.get(c) for c in channel_ids)

        if not settled():
            await self.wait_for(settled, timeout)
