"""Masking sessions as the rest of the code sees them."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from bridge.config import PURPOSE_CODE


def purpose_allowed(code: str, allowed: frozenset[str]) -> bool:
    """A purpose code is well formed and, when the operator lists purposes, one of them."""
    return bool(PURPOSE_CODE.fullmatch(code)) and (not allowed or code in allowed)


@dataclass(frozen=True)
class MaskingSession:
    id: uuid.UUID
    virtual_number: str
    participant_a: str
    participant_b: str
    status: str  # 'active' or 'closed'; expiry is a time, not a status
    record: bool
    created_at: datetime
    expires_at: datetime
    closed_at: datetime | None = None
    external_ref: str | None = None
    ttl_mode: str = "creation"  # or 'last_interaction': each call restarts the TTL
    ttl_seconds: int | None = None
    webhook_url: str | None = None
    purpose: str = "unspecified"  # why the numbers were collected (PDPA purpose limitation)
    window_starts_at: datetime | None = None  # calls are allowed only within the purpose's window
    window_ends_at: datetime | None = None
    time_limit_seconds: int | None = None  # each call's talk time, from its answer
    wait_audio_id: uuid.UUID | None = None  # heard instead of ringback while the counterpart rings
    recording_channels: int = 1  # 2: each party on its own channel of a stereo recording
    # Retention: an anonymised session keeps no numbers (participants are None);
    # one under legal hold is kept whole, by purge and erasure, until released.
    anonymised_at: datetime | None = None
    legal_hold_at: datetime | None = None
    legal_hold_reason: str | None = None
    legal_hold_by: str | None = None
    caller_id_policy: str = "shared"  # or 'per_participant': B dials and sees virtual_number_b
    virtual_number_b: str | None = None  # B's own number under 'per_participant' (sessions/caller_id.py)
    pin: str | None = None  # on a shared (pin_mode) number: what the caller enters to reach this session
    pin_unknown_callers: bool = False  # the PIN alone lets a non-participant reach participant b
    account_id: uuid.UUID | None = None  # the tenant whose API keys see it (bridge/store/apikeys.py)

    def is_live(self, now: datetime) -> bool:
        return self.status == "active" and self.expires_at > now

    def in_window(self, now: datetime) -> bool:
        return ((self.window_starts_at is None or now >= self.window_starts_at)
                and (self.window_ends_at is None or now < self.window_ends_at))

    def state(self, now: datetime) -> str:
        """'active', 'expired' or 'closed' as a caller would experience it now
        (a session past its time is expired even before the store marks it)."""
        if self.status == "active" and self.expires_at <= now:
            return "expired"
        return self.status

    def to_json(self, now: datetime) -> dict:
        return {
            "id": str(self.id),
            "virtual_number": self.virtual_number,
            "virtual_number_b": self.virtual_number_b,
            "caller_id_policy": self.caller_id_policy,
            "participant_a": self.participant_a,
            "participant_b": self.participant_b,
            "status": self.state(now),
            "record": self.record,
            "purpose": self.purpose,
            "allowed_window": {
                "start": self.window_starts_at.isoformat() if self.window_starts_at else None,
                "end": self.window_ends_at.isoformat() if self.window_ends_at else None,
            },
            "external_ref": self.external_ref,
            "wait_audio_id": str(self.wait_audio_id) if self.wait_audio_id else None,
            "recording_channels": self.recording_channels,
            "ttl_mode": self.ttl_mode,
            "ttl_seconds": self.ttl_seconds,
            "time_limit_seconds": self.time_limit_seconds,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "anonymised_at": self.anonymised_at.isoformat() if self.anonymised_at else None,
            "legal_hold": None if self.legal_hold_at is None else {
                "since": self.legal_hold_at.isoformat(), "reason": self.legal_hold_reason, "by": self.legal_hold_by},
            "pin": self.pin,
            "pin_unknown_callers": self.pin_unknown_callers,
        }


@dataclass(frozen=True)
class RouteLookup:
    """What the database knows about a (virtual number, caller) pair."""

    number_in_pool: bool
    sessions: tuple[MaskingSession, ...]  # sessions on this number that include the caller
    virtual_number: str | None = None  # the number dialed (None: not known)
    pin_mode: bool = False  # a shared number: the caller's PIN, not their number, names the session


@dataclass(frozen=True)
class SessionRequest:
    """A validated request for a new session (from the API or the CLI)."""

    participant_a: str
    participant_b: str
    ttl_seconds: int
    record: bool
    purpose: str
    window_starts_at: datetime | None = None
    window_ends_at: datetime | None = None
    dnc_checked_at: datetime | None = None  # a marketing purpose's Do Not Call register check: when
    dnc_reference: str | None = None  # and its reference
    wait_audio_id: uuid.UUID | None = None
    recording_channels: int = 1
    ttl_mode: str = "creation"
    external_ref: str | None = None
    webhook_url: str | None = None
    virtual_number: str | None = None  # explicit assignment, reserved numbers included
    sticky: str = "none"
    country_match: bool = True
    quarantine_seconds: int = 0
    time_limit_seconds: int | None = None
    caller_id_policy: str = "shared"  # 'per_participant': a second number, B's own
    virtual_number_b: str | None = None  # explicit assignment of B's number under 'per_participant'
    pin_mode: bool = False  # allocate a shared (pin_mode) number and a PIN on it
    pin_unknown_callers: bool = False
    pin_length: int = 4
    pin_quarantine_seconds: int = 3600
