"""Which virtual number each participant dials and sees: a session's caller ID policy.

`shared`: one virtual number; both parties dial it and see it when called.
`per_participant`: each party has a number of their own (Twilio Proxy's
per-participant proxy number), so each can save a distinct contact. A dials
X_A (`virtual_number`) to reach B, and B's phone shows X_B; B dials X_B
(`virtual_number_b`) and A's phone shows X_A. A number connects only its
holder: A dialing X_B is not a participant there.
"""
from __future__ import annotations

from typing import Protocol

SHARED = "shared"
PER_PARTICIPANT = "per_participant"
POLICIES = (SHARED, PER_PARTICIPANT)


class HasNumbers(Protocol):
    participant_a: str
    participant_b: str
    virtual_number: str
    virtual_number_b: str | None


def number_of(session: HasNumbers, role: str) -> str:
    """The virtual number participant `role` ('a' or 'b') dials, and sees when called."""
    if role == "b" and session.virtual_number_b:
        return session.virtual_number_b
    return session.virtual_number


def role_of(session: HasNumbers, number: str) -> str | None:
    """'a', 'b', or None when `number` is not a participant of the session."""
    if number == session.participant_a:
        return "a"
    if number == session.participant_b:
        return "b"
    return None


def other(role: str) -> str:
    return "b" if role == "a" else "a"


def participant(session: HasNumbers, role: str) -> str:
    """Participant `role`'s own number."""
    return session.participant_a if role == "a" else session.participant_b


def direction_of(caller_role: str) -> str:
    """A call's direction ('a_to_b' or 'b_to_a') when participant `caller_role` places it."""
    return f"{caller_role}_to_{other(caller_role)}"


def caller_of(direction: str | None) -> str | None:
    """The role that placed a call going `direction`; None for a call no participant placed."""
    return {"a_to_b": "a", "b_to_a": "b"}.get(direction or "")


def holds(session: HasNumbers, caller: str, dialed: str | None) -> bool:
    """Whether `caller` reaches this session by dialing `dialed` (None: not
    known, so any number of theirs)."""
    role = role_of(session, caller)
    return role is not None and (dialed is None or number_of(session, role) == dialed)


API_NAMES = ("caller_id_policy", "virtual_number", "virtual_number_b")
CLI_NAMES = ("--caller-id", "--number", "--number-b")


def numbers_problem(policy: str, virtual_number: str | None, virtual_number_b: str | None,
                    names: tuple[str, str, str] = API_NAMES) -> str | None:
    """Why explicitly assigned numbers do not fit the policy, or None if they do;
    `names` are what the asker calls (policy, number, number B): API fields or CLI options."""
    policy_name, number_name, number_b_name = names
    if virtual_number_b and policy != PER_PARTICIPANT:
        return f"{number_b_name} is B's own number: it needs {policy_name} {PER_PARTICIPANT}"
    if virtual_number_b and virtual_number_b == virtual_number:
        return f"{number_b_name} must differ from {number_name}"
    return None
