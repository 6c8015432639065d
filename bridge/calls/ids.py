"""Every Asterisk object of a call is named after its call id, so a row in
`calls` is enough to find them all again (adoption after a restart relies on
it). This module is the one place that says how."""
from __future__ import annotations

import uuid

# The role (first of `appArgs`) of every leg we create: a StasisStart with one
# is a leg of ours, never a new inbound call (whose argument is the number dialed).
OWN_LEG_ROLES = ("caller", "callee", "snoop")


def caller_channel(call_id: uuid.UUID) -> str:
    """The first party's leg of a click-to-call; an inbound caller's leg is named by Asterisk."""
    return f"{call_id}-caller"


def callee_channel(call_id: uuid.UUID) -> str:
    return f"{call_id}-callee"


def bridge(call_id: uuid.UUID) -> str:
    return f"{call_id}-bridge"


def snoop_channel(call_id: uuid.UUID) -> str:
    return f"{call_id}-snoop"


def callee_snoop_channel(call_id: uuid.UUID) -> str:
    """The second snoop of a two-channel recording (what the counterpart says)."""
    return f"{call_id}-snoop-callee"


def ringback(call_id: uuid.UUID) -> str:
    """The playback of ringback (or wait audio) to the caller: endless, so a
    process that adopts the call must be able to stop what its predecessor started."""
    return f"{call_id}-ringback"


def recording(call_id: uuid.UUID) -> str:
    """The stored recording's name in Asterisk (file `<name>.<format>`)."""
    return f"call-{call_id}"


def recording_part(call_id: uuid.UUID, party: str) -> str:
    """One party's recording of a two-channel call ('caller' or 'callee')."""
    return f"call-{call_id}-{party}"


def call_of_recording(name: str) -> uuid.UUID | None:
    """The call a stored recording's name belongs to; None for a name not ours."""
    if not name.startswith("call-"):
        return None
    stem = name[len("call-"):]
    for party in ("-caller", "-callee"):
        stem = stem.removesuffix(party)
    try:
        return uuid.UUID(stem)
    except ValueError:
        return None


def completed_event(call_id: uuid.UUID) -> uuid.UUID:
    """The id of a call's `call.completed`: one id, so a process closing a call
    its predecessor left (bridge/calls/adopt.py) never sends it twice."""
    return uuid.uuid5(call_id, "call.completed")
