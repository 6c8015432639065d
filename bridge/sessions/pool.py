"""Which virtual number a new session gets: pure ranking of free candidates.

The store finds the candidates (numbers in the pool, not reserved, that
neither participant holds in a live session) and enforces the hard rule with
a unique index; this module only decides among them:

1. never a number a participant used with a *different* counterpart within
   the quarantine period, so a stale caller does not reach the wrong person;
2. a number of a participant's own country first (A's, then B's), when
   `country_match` is on;
3. the sticky preference: `prefer_sticky` reuses a number a participant had
   before, `avoid_sticky` keeps it for last, `none` ignores history;
4. least recently allocated first.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timezone

import phonenumbers

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class StickyPreference(enum.Enum):
    NONE = "none"
    PREFER = "prefer_sticky"
    AVOID = "avoid_sticky"


@dataclass(frozen=True)
class Candidate:
    number: str
    country: str | None
    last_allocated_at: datetime | None
    held_before: bool  # a participant had this number in an ended session
    quarantined: bool  # ... with someone else, and that ended within the quarantine


def region_of(number: str) -> str | None:
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(number))
    except phonenumbers.NumberParseException:
        return None


def choose_number(candidates: list[Candidate], participant_a: str, participant_b: str,
                  sticky: StickyPreference = StickyPreference.NONE, country_match: bool = True) -> str | None:
    """The best candidate's number, or None when every candidate is quarantined."""
    regions = [region_of(participant_a), region_of(participant_b)]

    def rank(c: Candidate):
        country_rank = 0
        if country_match:
            country_rank = regions.index(c.country) if c.country in regions else len(regions)
        sticky_rank = {
            StickyPreference.PREFER: 0 if c.held_before else 1,
            StickyPreference.AVOID: 1 if c.held_before else 0,
            StickyPreference.NONE: 0,
        }[sticky]
        return country_rank, sticky_rank, c.last_allocated_at or EPOCH, c.number

    eligible = [c for c in candidates if not c.quarantined]
    return min(eligible, key=rank).number if eligible else None
