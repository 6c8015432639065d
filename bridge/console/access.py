"""Who may see and do what in the console: one table from permissions to the
API-key scopes that grant them, and one helper every handler asks.

The `console` scope opens the operators' pages; a key may also sign in with
the scope of a page alone (`subjects` for the privacy desk, say) and see just
what that scope covers. Personal data beyond masked numbers needs its own
scope on top: `reveal` to show a participant's number, `recordings` to play a
recording, `subjects` for the privacy desk and legal holds.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridge.privacy.audit import Actor, clean_reason

CONSOLE = "console"
REVEAL = "reveal"

# A permission is granted by any one of its scopes.
PERMISSIONS: dict[str, frozenset[str]] = {
    "live": frozenset({CONSOLE, "sessions"}),
    "sessions": frozenset({CONSOLE, "sessions"}),
    "webhooks": frozenset({CONSOLE, "sessions"}),
    "pool": frozenset({CONSOLE, "numbers"}),
    "privacy": frozenset({"subjects"}),
    "legal_hold": frozenset({"subjects"}),
    "audit": frozenset({"audit", "subjects"}),
    "reveal": frozenset({REVEAL}),
    "recordings": frozenset({"recordings"}),
}
# The pages in the navigation, in order, with the permission each needs.
PAGES = (("live", "Live", "/console/live"), ("sessions", "Sessions and calls", "/console/sessions"),
         ("pool", "Pool", "/console/pool"), ("webhooks", "Webhooks", "/console/webhooks"),
         ("privacy", "Privacy desk", "/console/privacy"))
PAGE_PERMISSIONS = frozenset(page for page, _, _ in PAGES)


class Forbidden(Exception):
    """The signed-in key lacks the scope an action needs; the message names it."""


@dataclass(frozen=True)
class Principal:
    """Who is signed in: the API key as it is now, and which sign-in this is."""

    key_prefix: str
    key_name: str
    scopes: frozenset[str]
    signin_id: str  # a short public name of the sign-in (never its token)
    expires_at: datetime

    def actor(self, source: str, reason: str | None = None) -> Actor:
        """For the audit rows this person's actions write."""
        return Actor(f"console:{self.key_prefix}:{self.key_name}", source, clean_reason(reason))


def allowed(principal: Principal, permission: str) -> bool:
    return bool(PERMISSIONS[permission] & principal.scopes)


def require(principal: Principal, permission: str) -> Principal:
    """The principal, if it holds `permission`; Forbidden otherwise."""
    if not allowed(principal, permission):
        needed = " or ".join(sorted(PERMISSIONS[permission]))
        raise Forbidden(f"this API key lacks the scope for this: {needed}")
    return principal


def may_sign_in(scopes: frozenset[str]) -> bool:
    """A key may sign in if it opens at least one page."""
    return any(PERMISSIONS[page] & scopes for page in PAGE_PERMISSIONS)


def pages_for(principal: Principal) -> list[tuple[str, str, str]]:
    return [page for page in PAGES if allowed(principal, page[0])]


def home_for(principal: Principal) -> str:
    return pages_for(principal)[0][2]


def landing(principal: Principal, asked: str | None) -> str:
    """Where signing in leads: the page asked for if this key may open it, else its first page."""
    for page, _, href in PAGES:
        if asked and (asked == href or asked.startswith(href + "/") or asked.startswith(href + "?")):
            return asked if allowed(principal, page) else home_for(principal)
    return asked or home_for(principal)
