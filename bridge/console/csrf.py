"""CSRF tokens: one per sign-in, derived from its cookie's token, so nothing
more is stored and a page's token does not give the cookie away."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

FIELD = "csrf_token"


def csrf_token(token: str) -> str:
    """The CSRF token of the sign-in whose cookie holds `token`."""
    digest = hmac.new(token.encode(), b"masking-console-csrf", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def same_token(expected: str, given: object) -> bool:
    """Whether a form's field holds the expected token (compared in constant time)."""
    return isinstance(given, str) and bool(expected) and secrets.compare_digest(expected.encode(), given.encode())
