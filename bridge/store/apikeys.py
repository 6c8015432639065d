"""API keys' SQL (`api_keys`): a token is shown once; only its hash is kept."""
from __future__ import annotations

import hashlib
import secrets
import uuid

from bridge.privacy.audit import Actor
from bridge.store.audit import AuditTrail
from bridge.store.db import Database


class ApiKeys:
    """`store.api_keys`: the keys business back ends authenticate with."""

    def __init__(self, db: Database, audit: AuditTrail):
        self.db, self.audit = db, audit

    async def create(self, name: str, scopes: list[str], *, by: Actor | None = None) -> tuple[str, dict]:
        """Return (token, row). The token is shown once; only its hash is kept (and
        the apikey.created row written for `by` names the key by its prefix)."""
        prefix, secret = secrets.token_hex(4), secrets.token_urlsafe(24)

        async def create(conn):
            async with conn.transaction():
                row = await conn.fetchrow(
                    "INSERT INTO api_keys (id, name, prefix, key_hash, scopes) VALUES ($1, $2, $3, $4, $5)"
                    " RETURNING id, name, prefix, scopes, created_at",
                    uuid.uuid4(), name, prefix, _hash_secret(secret), scopes)
                if by:
                    await self.audit.append_by(by, "apikey.created", "apikey", prefix, conn,
                                               details={"name": name, "scopes": scopes})
                return row

        return f"mk_{prefix}_{secret}", dict(await self.db.run(create))

    async def for_token(self, token: str) -> dict | None:
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "mk":
            return None
        row = await self.db.run(lambda conn: conn.fetchrow(
            "SELECT * FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL", parts[1]))
        if row is None or not secrets.compare_digest(row["key_hash"], _hash_secret(parts[2])):
            return None
        return dict(row)

    async def list(self) -> list[dict]:
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT id, name, prefix, scopes, created_at, revoked_at FROM api_keys ORDER BY created_at"))
        return [dict(r) for r in rows]

    async def revoke(self, prefix: str, *, by: Actor | None = None) -> bool:
        async def revoke(conn):
            async with conn.transaction():
                name = await conn.fetchval("UPDATE api_keys SET revoked_at = now()"
                                           " WHERE prefix = $1 AND revoked_at IS NULL RETURNING name", prefix)
                if name is not None and by:
                    await self.audit.append_by(by, "apikey.revoked", "apikey", prefix, conn, details={"name": name})
                return name is not None

        return await self.db.run(revoke)


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
