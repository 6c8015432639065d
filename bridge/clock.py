"""The one clock the bridge reads: timezone-aware UTC, so times compare with
what PostgreSQL and Asterisk write."""
from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
