"""What the console's pages show, decided from data alone: a live call's state,
today's outcomes, how urgent a subject request is, the pool chart's series.
No I/O here, so each rule is tested on its own (tests/unit/test_console_state.py)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone

# A call in progress, as its row says it is: the states in the order a call meets them.
STATE_LABELS = {"pin": "PIN entry", "notice": "Recording notice", "setup": "Setting up", "dialing": "Dialing",
                "ringing": "Ringing", "talking": "Talking"}


def call_state(call: dict) -> str:
    """`talking` once bridged; `ringing` while the counterpart (or, in a
    click-to-call, a party) rings; `dialing` once the counterpart's leg exists;
    before that, `pin` on a shared number until a PIN names the session,
    `notice` while a recorded call's caller hears the recording notice."""
    if call.get("answered_at"):
        return "talking"
    if call.get("ringing_at") or (call.get("kind") == "connect" and not call.get("caller_answered_at")):
        return "ringing"
    if call.get("callee_channel_id"):
        return "dialing"
    if call.get("session_id") is None and call.get("kind") != "connect":
        return "pin"
    if call.get("session_records"):
        return "notice"
    return "setup"


@dataclass(frozen=True)
class LiveCall:
    id: str
    session_id: str | None
    virtual_number: str
    state: str
    label: str
    seconds: float  # since the call started
    talk_seconds: float | None
    node: str
    path: str  # ari | agi
    kind: str  # inbound | connect
    direction: str | None


def live_call(call: dict, now: datetime) -> LiveCall:
    state = call_state(call)
    answered = call.get("answered_at")
    return LiveCall(
        id=str(call["id"]), session_id=str(call["session_id"]) if call.get("session_id") else None,
        virtual_number=call["virtual_number"], state=state, label=STATE_LABELS[state],
        seconds=(now - call["started_at"]).total_seconds(),
        talk_seconds=(now - answered).total_seconds() if answered else None,
        node=node_name(call.get("asterisk_node")), path=call.get("path") or "ari", kind=call.get("kind") or "inbound",
        direction=call.get("direction"))


def node_name(node: str | None) -> str:
    """`http://127.0.0.1:8088/masking` -> `127.0.0.1:8088/masking`: the Asterisk node and app."""
    if not node:
        return "–"
    return node.split("://", 1)[-1]


def day_start(now: datetime) -> datetime:
    """Midnight UTC of `now`'s day: 'today' on the Live page."""
    return datetime.combine(now.astimezone(timezone.utc).date(), time(0), tzinfo=timezone.utc)


# Outcomes grouped as an operator reads them: a call cut at its time limit was
# answered, one Asterisk dropped under it failed.
OUTCOME_GROUPS = {"answered": ("answered", "time_limit"), "busy": ("busy",), "failed": ("failed", "interrupted"),
                  "no_answer": ("no_answer",), "cancelled": ("cancelled",), "rejected": ("rejected",),
                  "in_progress": ("in_progress",)}


def outcomes(dispositions: dict[str, int]) -> dict[str, int]:
    return {group: sum(dispositions.get(d, 0) for d in members) for group, members in OUTCOME_GROUPS.items()}


@dataclass(frozen=True)
class Due:
    urgency: str  # overdue | soon | later | closed
    text: str


def due(status: str, due_at: datetime, now: datetime, soon_days: int = 7) -> Due:
    """How a subject request's deadline reads: overdue ones stand out (in
    words, not only in colour), those due within `soon_days` are flagged."""
    if status != "open":
        return Due("closed", status)
    left = due_at - now
    if left < timedelta(0):
        days = -left // timedelta(days=1)
        return Due("overdue", "overdue by " + (f"{days} day" + ("s" if days != 1 else "") if days else "hours"))
    days = left // timedelta(days=1)
    text = "due today" if days == 0 else f"due in {days} day" + ("s" if days != 1 else "")
    return Due("soon" if days < soon_days else "later", text)


def pool_series(samples: list[dict], current: dict | None, now: datetime) -> dict[str, list]:
    """The pool chart's columns (uPlot's layout: x in epoch seconds, then one
    list per line), with the pool as it is now as the last point."""
    points = [*samples, *([{**current, "at": now}] if current else [])]
    return {"t": [int(p["at"].timestamp()) for p in points],
            "in_use": [p["in_use"] for p in points],
            "active": [p["active"] for p in points],
            "quarantined": [p["quarantined"] for p in points]}


def utilisation(summary: dict) -> float | None:
    """Share of the pool's numbers held by live sessions (None: an empty pool)."""
    return summary["in_use"] / summary["active"] if summary.get("active") else None
