"""The preservation hold's SQL: a session is kept whole by purge and erasure
while either of its participants has an access or correction request open, or
had one refused less than 30 days ago (bridge/privacy/rights.py). Computed from
`subject_requests` at each decision: nothing to set or forget to release."""
from __future__ import annotations

from bridge.privacy.rights import PRESERVE_AFTER_REFUSAL, PRESERVING_KINDS

_KINDS = ", ".join(f"'{k}'" for k in PRESERVING_KINDS)
# True for the session aliased `s`: one of its participants has a request that preserves it.
PRESERVED = (
    "EXISTS (SELECT 1 FROM subject_requests q"
    " WHERE q.subject_hash IN (s.participant_a_hash, s.participant_b_hash)"
    f" AND q.kind IN ({_KINDS}) AND (q.status = 'open' OR (q.status = 'refused'"
    f" AND q.completed_at > now() - interval '{PRESERVE_AFTER_REFUSAL.days} days')))")
# Held by a legal hold or by the preservation hold: purge leaves it, erasure keeps it.
HELD = f"(s.legal_hold_at IS NOT NULL OR {PRESERVED})"
