"""Typed ARI events and the websocket that delivers them.

One task reads the websocket and only parses and routes: Asterisk drops a
consumer that keeps it waiting more than 100 ms (`websocket_write_timeout`),
so all call logic runs in per-call tasks fed through queues.
"""
from __future__ import annotations

import asyncio
import json
import random
import re
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol

import aiohttp

from bridge import metrics
from bridge.logs import get_logger

log = get_logger("bridge.ari")
_EVENT_TYPE = re.compile(r"[A-Za-z]{1,48}")  # a metric label: Asterisk's event names, nothing else


@dataclass(frozen=True)
class Channel:
    id: str
    name: str
    state: str
    caller_number: str
    exten: str

    @classmethod
    def from_json(cls, data: dict) -> "Channel":
        return cls(
            id=data["id"],
            name=data.get("name", ""),
            state=data.get("state", ""),
            caller_number=(data.get("caller") or {}).get("number", ""),
            exten=(data.get("dialplan") or {}).get("exten", ""),
        )


@dataclass(frozen=True)
class Event:
    """The fields of an ARI event the bridge acts on, and no more: a call keeps
    some events (its StasisStart, the Dial that answered) for its whole length,
    and the decoded JSON of one is several times these fields (bench.memory)."""

    type: str
    channel: Channel | None = None
    args: tuple[str, ...] = ()
    cause: int | None = None
    dialstatus: str | None = None
    peer_id: str | None = None
    target_id: str | None = None  # channel a playback or recording ran on
    recording_name: str | None = None
    playback_id: str | None = None
    digit: str | None = None  # ChannelDtmfReceived
    soft_hangup: int | None = None  # a soft ChannelHangupRequest's AST_SOFTHANGUP_* flags
    playback_state: str | None = None  # "done", "failed", ... (PlaybackFinished)
    timestamp: str | None = None  # when Asterisk raised it (ISO 8601, as ARI writes it)

    @property
    def channel_ids(self) -> set[str]:
        """Every channel this event concerns, for routing to the calls that own them."""
        ids = {self.peer_id, self.target_id, self.channel.id if self.channel else None}
        return {i for i in ids if i}


def parse_event(data: dict) -> Event:
    channel = Channel.from_json(data["channel"]) if isinstance(data.get("channel"), dict) else None
    peer = data.get("peer") if isinstance(data.get("peer"), dict) else None
    media = data.get("recording") or data.get("playback") or {}
    target_uri = media.get("target_uri", "")
    return Event(
        type=data.get("type", ""),
        channel=channel,
        args=tuple(data.get("args") or ()),
        # A soft hangup request's `cause` is Asterisk's soft-hangup flag (32 for
        # an ARI DELETE, 4 for a shutdown), not a Q.850 cause: the real one follows.
        cause=None if data.get("soft") else data.get("cause"),
        soft_hangup=data.get("cause") if data.get("soft") else None,
        dialstatus=data.get("dialstatus"),
        peer_id=peer["id"] if peer else None,
        target_id=target_uri.split(":", 1)[1] if target_uri.startswith("channel:") else None,
        recording_name=(data.get("recording") or {}).get("name"),
        playback_id=(data.get("playback") or {}).get("id"),
        digit=data.get("digit"),
        playback_state=(data.get("playback") or {}).get("state"),
        timestamp=data.get("timestamp"),
    )


class Inbox(Protocol):
    """Where a call's events go (asyncio.Queue, or the calls' own Mailbox)."""

    def put_nowait(self, event: Event) -> None: ...


class EventRouter:
    """Hands each event to the queue of the call that owns its channel.

    A call registers its channel ids before it creates them (ids are chosen by
    us), so no event can arrive before its owner listens. A StasisStart that no
    call owns is a new inbound call and goes to `on_new_channel`.
    """

    def __init__(self, on_new_channel: Callable[[Event], None]):
        self._owners: dict[str, Inbox] = {}
        self._entered: set[str] = set()  # owned channels whose StasisStart was seen
        self._on_new_channel = on_new_channel

    def register(self, channel_id: str, queue: Inbox) -> None:
        self._owners[channel_id] = queue

    def unregister(self, channel_id: str) -> None:
        self._owners.pop(channel_id, None)
        self._entered.discard(channel_id)

    def has_entered(self, channel_id: str) -> bool:
        """Owned and seen in Stasis: a leg that exists (or existed) in Asterisk."""
        return channel_id in self._entered

    def owns(self, channel_id: str) -> bool:
        return channel_id in self._owners

    def dispatch(self, event: Event) -> None:
        queues = {id(q): q for cid in event.channel_ids if (q := self._owners.get(cid)) is not None}
        if event.type == "StasisStart" and event.channel is not None and event.channel.id in self._owners:
            self._entered.add(event.channel.id)
        for queue in queues.values():
            queue.put_nowait(event)
        if not queues and event.type == "StasisStart" and event.channel is not None:
            self._on_new_channel(event)


class EventStream:
    """The `/ari/events` websocket, reconnected with jittered backoff."""

    def __init__(self, base_url: str, auth_header: str, app: str, router: EventRouter,
                 on_connected: Callable[[], Awaitable[None]] | None = None):
        ws_base = base_url.replace("http://", "ws://").replace("https://", "wss://").rstrip("/")
        self.url = f"{ws_base}/ari/events?app={app}&subscribeAll=false"
        self.auth_header = auth_header
        self.router = router
        self.on_connected = on_connected
        self.connected = asyncio.Event()
        self._stop = False
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def run(self) -> None:
        attempt = 0
        async with aiohttp.ClientSession(headers={"Authorization": self.auth_header}) as http:
            while not self._stop:
                try:
                    async with http.ws_connect(self.url, heartbeat=15) as ws:
                        self._ws = ws
                        attempt = 0
                        self.connected.set()
                        log.info("ari.connected")
                        if self.on_connected:
                            await self.on_connected()
                        await self._read(ws)
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    log.warning("ari.connect_failed", error=type(exc).__name__)
                finally:
                    if self.connected.is_set():
                        log.warning("ari.disconnected")
                    self.connected.clear()
                if self._stop:
                    break
                attempt += 1
                delay = min(10.0, 0.2 * 2 ** min(attempt, 6)) * random.uniform(0.5, 1.0)
                await asyncio.sleep(delay)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                event = parse_event(json.loads(message.data))
            except (ValueError, KeyError, TypeError):
                log.warning("ari.bad_event")
                continue
            metrics.ari_events_total.counts[event.type if _EVENT_TYPE.fullmatch(event.type) else "other",] += 1
            self.router.dispatch(event)

    def stop(self) -> None:
        self._stop = True
        if self._ws is not None:
            asyncio.ensure_future(self._ws.close())

    async def drop(self) -> None:
        """Close the current connection (fault injection); `run` reconnects."""
        if self._ws is not None:
            await self._ws.close()
