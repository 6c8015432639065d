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

Under the per-participant caller ID policy a session takes two numbers, one
per participant, each free for its holder: `choose_pair`, by the same rules.
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
    rank = _ranking([region_of(participant_a), region_of(participant_b)], sticky, country_match)
    eligible = [c for c in candidates if not c.quarantined]
    return min(eligible, key=rank).number if eligible else None


def choose_pair(candidates_a: list[Candidate], candidates_b: list[Candidate], participant_a: str,
                participant_b: str, sticky: StickyPreference = StickyPreference.NONE,
                country_match: bool = True) -> tuple[str, str] | None:
    """Two different numbers, one per participant (the per-participant caller ID
    policy): X_A among those free for A, A's country first; X_B among those
    free for B, B's country first. None when no such pair exists.

    Each list holds the numbers free for that participant, with `held_before`
    and `quarantined` as they apply to that participant alone: a number is
    only ever dialed by its holder.
    """
    region_a, region_b = region_of(participant_a), region_of(participant_b)
    rank_a = _ranking([region_a, region_b], sticky, country_match)
    rank_b = _ranking([region_b, region_a], sticky, country_match)
    eligible_b = [c for c in candidates_b if not c.quarantined]
    for x_a in sorted((c for c in candidates_a if not c.quarantined), key=rank_a):
        x_b = min((c for c in eligible_b if c.number != x_a.number), key=rank_b, default=None)
        if x_b is not None:
            return x_a.number, x_b.number
        if not eligible_b:
            break
    return None


def _ranking(regions: list[str | None], sticky: StickyPreference, country_match: bool):
    """The sort key of the rules above, for participants in `regions` (first preferred)."""

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

    return rank
