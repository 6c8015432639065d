"""A session row and its numbers: sealed (AES-GCM, bound to the row and column)
and hashed (keyed, for lookups) on the way in, opened only in memory on the
way out. Every module that reads `masking_sessions` goes through here."""
from __future__ import annotations

import uuid

import asyncpg

from bridge.privacy.crypto import KeyRing, number_context
from bridge.privacy.lookup import LookupKeys
from bridge.sessions.models import MaskingSession


def session_from_row(keys: KeyRing, row: asyncpg.Record) -> MaskingSession:
    """A session row with its participants' numbers opened (only ever in memory)."""
    session_id, key_id = row["id"], row["key_id"]

    def opened(column: str) -> str | None:  # None once anonymised
        sealed = row[f"{column}_sealed"]
        return None if sealed is None else keys.open_number(key_id, sealed,
                                                            number_context("masking_sessions", session_id, column))

    return MaskingSession(
        id=session_id, virtual_number=row["virtual_number"],
        participant_a=opened("participant_a"), participant_b=opened("participant_b"),
        # A participant who withdrew consent is not recorded again (bridge/store/consent.py).
        status=row["status"], record=row["record"] and not row.get("withdrawn", False),
        created_at=row["created_at"], expires_at=row["expires_at"], closed_at=row["closed_at"],
        external_ref=row["external_ref"], ttl_mode=row["ttl_mode"], ttl_seconds=row["ttl_seconds"],
        webhook_url=row["webhook_url"], purpose=row["purpose"],
        window_starts_at=row["window_starts_at"], window_ends_at=row["window_ends_at"],
        time_limit_seconds=row["time_limit_seconds"],
        wait_audio_id=row["wait_audio_id"], recording_channels=row["recording_channels"],
        anonymised_at=row.get("anonymised_at"), legal_hold_at=row.get("legal_hold_at"),
        legal_hold_reason=row.get("legal_hold_reason"), legal_hold_by=row.get("legal_hold_by"),
        caller_id_policy=row["caller_id_policy"], virtual_number_b=row["virtual_number_b"],
        pin=row["pin"], pin_unknown_callers=row["pin_unknown_callers"], account_id=row.get("account_id"),
    )


def seal_participants(keys: KeyRing, session_id: uuid.UUID, a: str, b: str, lookup: LookupKeys | None = None) -> tuple:
    """(hash a, hash b, sealed a, sealed b, key id): the columns that hold a session's numbers.
    `lookup`: the lookup keys the caller took once (`keys.lookups()`), so the hashes and the
    `lookup_key_id` it writes beside them come from one reading of the key file."""
    lookup = lookup or keys.lookups()
    return (lookup.hash(a), lookup.hash(b),
            keys.seal_number(a, number_context("masking_sessions", session_id, "participant_a")),
            keys.seal_number(b, number_context("masking_sessions", session_id, "participant_b")),
            keys.row_key_id)
