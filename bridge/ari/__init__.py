"""ARI client: REST calls, the event websocket, typed events."""
from bridge.ari.client import AriClient, AriConflict, AriError, AriNotConnected, AriNotFound, AriUnreachable
from bridge.ari.events import Channel, Event, EventRouter, EventStream, parse_event

__all__ = [
    "AriClient", "AriConflict", "AriError", "AriNotConnected", "AriNotFound", "AriUnreachable",
    "Channel", "Event", "EventRouter", "EventStream", "parse_event",
]
