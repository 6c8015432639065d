"""What every call coroutine is handed and what it keeps: the service's parts
(`CallDeps`), the call's Asterisk objects (`CallState`), and `CallAborted`.
They live apart from the flow so that its helpers (PIN entry, recording,
teardown, adoption) can share them without importing the flow."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from bridge.ami import AsteriskMonitor
from bridge.ari import AriClient, EventRouter
from bridge.calls import ids
from bridge.calls.spool import Spool
from bridge.config import Settings
from bridge.store import Store


class CallAborted(Exception):
    """A step of the call could not proceed (a leg vanished or never appeared)."""


@dataclass
class CallDeps:
    """What a call needs from the service, passed in so tests can swap parts."""

    ari: AriClient
    store: Store
    router: EventRouter
    settings: Settings
    node: str = "default"  # the Asterisk this process drives (its ARI URL and app)
    spool: Spool | None = None  # where row writes wait while the database is down
    presentation: str = ""  # "prohib": the outbound trunk asks for privacy (stack/trunks.py)
    active: dict[str, "CallState"] = field(default_factory=dict)
    ami: AsteriskMonitor | None = None  # MixMonitor recording; without it, snoops (recording.py)


@dataclass
class CallState:
    id: uuid.UUID
    caller_id: str
    callee_id: str | None = None
    bridge_id: str | None = None
    snoop_id: str | None = None
    recording_name: str | None = None
    tap: str = "snoop"  # how it is recorded: snoop (ARI) or mixmonitor (AMI, on the caller's channel)
    # Two-channel recordings: a second snoop and recording for the counterpart,
    # and the silence that lines the two up (samples before each).
    callee_snoop_id: str | None = None
    callee_recording_name: str | None = None
    recording_delays: tuple[int, int] = (0, 0)
    recording_id: uuid.UUID | None = None
    # Legs we already asked Asterisk to hang up: never again, since a second,
    # causeless DELETE can overwrite the cause (the caller then gets 603).
    released: set[str] = field(default_factory=set)
    # What plays or rings on each leg before it is bridged (bridge/calls/media.py):
    # stopped before an ending prompt, which would otherwise queue behind it.
    playing: dict[str, set[str]] = field(default_factory=dict)  # channel id -> playback ids
    ringing: set[str] = field(default_factory=set)

    def use_recording(self, channels: int, tap: str = "snoop") -> None:
        """Name the recordings of this call, and its snoops if it has any
        (they derive from its id)."""
        self.tap = tap
        self.snoop_id = ids.snoop_channel(self.id) if tap == "snoop" else None
        if channels == 2:
            self.recording_name = ids.recording_part(self.id, "caller")
            self.callee_snoop_id = ids.callee_snoop_channel(self.id) if tap == "snoop" else None
            self.callee_recording_name = ids.recording_part(self.id, "callee")
        else:
            self.recording_name = ids.recording(self.id)
