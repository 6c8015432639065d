"""Masking sessions as the rest of the code sees them."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime


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

    def is_live(self, now: datetime) -> bool:
        return self.status == "active" and self.expires_at > now

    def state(self, now: datetime) -> str:
        """'active', 'expired' or 'closed' as a caller would experience it now."""
        if self.status == "active" and self.expires_at <= now:
            return "expired"
        return self.status

    def to_json(self, now: datetime) -> dict:
        return {
            "id": str(self.id),
            "virtual_number": self.virtual_number,
            "participant_a": self.participant_a,
            "participant_b": self.participant_b,
            "status": self.state(now),
            "record": self.record,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
        }


@dataclass(frozen=True)
class RouteLookup:
    """What the database knows about a (virtual number, caller) pair."""

    number_in_pool: bool
    sessions: tuple[MaskingSession, ...]  # sessions on this number that include the caller
