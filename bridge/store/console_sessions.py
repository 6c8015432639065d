"""The web console's sign-ins' SQL (`console_sessions`): a row per sign-in,
found by the SHA-256 of the cookie's token, alive while unexpired, not signed
out, and while the API key behind it is not revoked (bridge/console/auth.py)."""
from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from bridge.store.db import Database


@dataclass(frozen=True)
class ConsoleSignIn:
    """A live sign-in, with the API key it was made with as that key is now."""

    token_hash: bytes
    api_key_id: uuid.UUID
    key_prefix: str
    key_name: str
    scopes: frozenset[str]
    created_at: datetime
    expires_at: datetime


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class ConsoleSessions:
    """`store.console_sessions`."""

    def __init__(self, db: Database):
        self.db = db

    async def create(self, api_key_id: uuid.UUID, source: str, lifetime_seconds: int) -> str:
        """A new sign-in for the key; returns its token (shown to the browser once, as a cookie).
        Sign-ins past their expiry are removed on the way, so the table stays small."""
        token = secrets.token_urlsafe(32)

        async def create(conn):
            async with conn.transaction():
                await conn.execute("DELETE FROM console_sessions WHERE expires_at < now() - interval '1 day'")
                await conn.execute(
                    "INSERT INTO console_sessions (token_hash, api_key_id, source, expires_at)"
                    " VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
                    token_hash(token), api_key_id, source[:100], lifetime_seconds)

        await self.db.run(create)
        return token

    async def lookup(self, token: str) -> ConsoleSignIn | None:
        """The live sign-in behind a cookie's token, or None (unknown, expired,
        signed out, or its API key revoked)."""
        row = await self.db.run(lambda conn: conn.fetchrow(
            "SELECT s.token_hash, s.api_key_id, s.created_at, s.expires_at, k.prefix, k.name, k.scopes"
            " FROM console_sessions s JOIN api_keys k ON k.id = s.api_key_id"
            " WHERE s.token_hash = $1 AND s.ended_at IS NULL AND s.expires_at > now() AND k.revoked_at IS NULL",
            token_hash(token)))
        if row is None:
            return None
        return ConsoleSignIn(row["token_hash"], row["api_key_id"], row["prefix"], row["name"],
                             frozenset(row["scopes"]), row["created_at"], row["expires_at"])

    async def end(self, token: str) -> bool:
        """Sign out: the token no longer signs anyone in. False if it was not live."""
        result = await self.db.run(lambda conn: conn.execute(
            "UPDATE console_sessions SET ended_at = now() WHERE token_hash = $1 AND ended_at IS NULL",
            token_hash(token)))
        return result.split()[-1] != "0"
