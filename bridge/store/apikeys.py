"""API keys' SQL (`api_keys`, `accounts`): a token is shown once; only its hash
is kept. Every key belongs to an account, the tenant whose sessions it sees.

An account's rows are its sessions' and, through them, their calls,
recordings and webhook events; rows about no session (a call to a number no
session holds) are the default account's, the operator's own. `owned_by`
writes that rule once for every domain's queries.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import uuid

from bridge.privacy.audit import Actor
from bridge.store.audit import AuditTrail
from bridge.store.db import Database

DEFAULT_ACCOUNT = "default"
DEFAULT_ACCOUNT_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")  # created by migration 0020
ACCOUNT_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


class InvalidAccountName(ValueError):
    """Account names are lower-case codes such as `shop-a`."""


def owned_by(account: str, session_id: str, session_account: str) -> str:
    """SQL true when a row belongs to account `account` (a parameter such as
    `$2`; NULL: the operator, who sees every row): the row's session is the
    account's (`session_account`, from a LEFT JOIN), or it has no session
    (`session_id` NULL) and the account is the default one."""
    return (f"({account}::uuid IS NULL OR {session_account} = {account}::uuid"
            f" OR ({session_id} IS NULL AND {account}::uuid = '{DEFAULT_ACCOUNT_ID}'))")


class ApiKeys:
    """`store.api_keys`: the keys business back ends authenticate with, and their accounts."""

    def __init__(self, db: Database, audit: AuditTrail):
        self.db, self.audit = db, audit

    async def create(self, name: str, scopes: list[str], *, account: str = DEFAULT_ACCOUNT,
                     by: Actor | None = None) -> tuple[str, dict]:
        """Return (token, row). The token is shown once; only its hash is kept (and
        the apikey.created row written for `by` names the key by its prefix).
        The account is created on its first key."""
        if not ACCOUNT_NAME.fullmatch(account):
            raise InvalidAccountName("an account name is 1 to 63 of a-z, 0-9, '_', '.', '-', starting with a"
                                     " letter or digit")
        prefix, secret = secrets.token_hex(4), secrets.token_urlsafe(24)

        async def create(conn):
            async with conn.transaction():
                account_id = await conn.fetchval(
                    "INSERT INTO accounts (id, name) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET name = $2"
                    " RETURNING id", uuid.uuid4(), account)
                row = await conn.fetchrow(
                    "INSERT INTO api_keys (id, name, prefix, key_hash, scopes, account_id)"
                    " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, name, prefix, scopes, created_at, account_id",
                    uuid.uuid4(), name, prefix, _hash_secret(secret), scopes, account_id)
                if by:
                    await self.audit.append_by(by, "apikey.created", "apikey", prefix, conn,
                                               details={"name": name, "scopes": scopes})
                return {**dict(row), "account": account}

        return f"mk_{prefix}_{secret}", await self.db.run(create)

    async def for_token(self, token: str) -> dict | None:
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "mk":
            return None
        row = await self.db.run(lambda conn: conn.fetchrow(
            "SELECT k.*, a.name AS account FROM api_keys k JOIN accounts a ON a.id = k.account_id"
            " WHERE k.prefix = $1 AND k.revoked_at IS NULL", parts[1]))
        if row is None or not secrets.compare_digest(row["key_hash"], _hash_secret(parts[2])):
            return None
        return dict(row)

    async def list(self) -> list[dict]:
        rows = await self.db.run(lambda conn: conn.fetch(
            "SELECT k.id, k.name, k.prefix, k.scopes, a.name AS account, k.created_at, k.revoked_at"
            " FROM api_keys k JOIN accounts a ON a.id = k.account_id ORDER BY k.created_at"))
        return [dict(r) for r in rows]

    async def account_name(self, account_id: uuid.UUID | None) -> str:
        """An account's name (None: the default account)."""
        if account_id is None or account_id == DEFAULT_ACCOUNT_ID:
            return DEFAULT_ACCOUNT
        return await self.db.run(lambda conn: conn.fetchval("SELECT name FROM accounts WHERE id = $1", account_id))

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
