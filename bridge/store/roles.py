"""The database roles: the service's least-privileged application role, set up by the owner.

`masking db upgrade` connects as the admin role (MASKING_DATABASE_ADMIN_URL),
which owns the schema, and then makes the role of MASKING_DATABASE_URL an
application role: it can log in and connect, read and write the rows of every
table, and nothing else: no superuser or role attributes, no DDL (nothing
created in the database or its schema, no temporary tables), no TRUNCATE,
and on `audit_log` only INSERT and SELECT. Grants are recomputed from scratch
on every upgrade, in one transaction, so tables added by later migrations are
covered and a grant made by hand in between does not survive.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import urllib.parse
from dataclasses import dataclass

import asyncpg

from bridge.store.db import Database

ROW_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
# Tables the application role may not change as it changes others: privileges taken back.
NARROWER = {"audit_log": "UPDATE, DELETE", "schema_migrations": "INSERT, UPDATE, DELETE"}
# Role attributes an application role must not have.
POWERS = {"rolsuper": "SUPERUSER", "rolcreatedb": "CREATEDB", "rolcreaterole": "CREATEROLE",
          "rolreplication": "REPLICATION", "rolbypassrls": "BYPASSRLS"}
SCRAM_ITERATIONS = 4096


@dataclass(frozen=True)
class RoleSetup:
    role: str
    created: bool
    removed_powers: tuple[str, ...]  # attributes the role had and lost (SUPERUSER, CREATEDB...)
    password_set: bool


def dsn_user(dsn: str) -> tuple[str | None, str | None]:
    """The (user, password) a postgresql:// URL names; None where it names none."""
    parts = urllib.parse.urlsplit(dsn)
    unquote = urllib.parse.unquote
    return (unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None)


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password, computed here so the
    password itself never travels in a statement (nor lands in a server log)."""
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return (f"SCRAM-SHA-256${iterations}:{b64(salt)}"
            f"${b64(hashlib.sha256(client_key).digest())}:{b64(server_key)}")


def identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Roles:
    """`store.roles`: run on the admin's connection, except `excess_privileges`."""

    def __init__(self, db: Database):
        self.db = db

    async def grant_application_role(self, role: str, password: str | None) -> RoleSetup | None:
        """Create `role` if missing, strip its powers, and grant it exactly what the service needs.
        None if `role` is the connected (admin) role itself: one role for both, nothing to set up."""

        async def setup(conn: asyncpg.Connection) -> RoleSetup | None:
            if role == await conn.fetchval("SELECT current_user"):
                return None
            async with conn.transaction():
                created, removed = await _ensure_role(conn, role)
                if password:
                    await conn.execute(f"ALTER ROLE {identifier(role)} PASSWORD '{scram_verifier(password)}'")
                await _grant(conn, identifier(role))
            return RoleSetup(role, created, removed, bool(password))

        return await self.db.run(setup, timeout=60)

    async def excess_privileges(self) -> list[str]:
        """What the connected role can do beyond an application role's rights (empty: nothing)."""
        row = await self.db.run(lambda conn: conn.fetchrow(
            "SELECT r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolreplication, r.rolbypassrls,"
            " pg_has_role(current_user, c.relowner, 'USAGE') AS owns_tables,"
            " has_table_privilege(c.oid, 'UPDATE') OR has_table_privilege(c.oid, 'DELETE')"
            "  OR has_table_privilege(c.oid, 'TRUNCATE') AS rewrites_audit,"
            " has_schema_privilege('public', 'CREATE') OR has_database_privilege(current_database(), 'CREATE')"
            "  AS creates"
            " FROM pg_roles r, pg_class c WHERE r.rolname = current_user AND c.oid = 'audit_log'::regclass"))
        found = [power for column, power in POWERS.items() if row[column]]
        found += [what for column, what in (("owns_tables", "owns the tables"),
                                            ("rewrites_audit", "may update or delete audit_log"),
                                            ("creates", "may create objects")) if row[column]]
        return found


async def _ensure_role(conn: asyncpg.Connection, role: str) -> tuple[bool, tuple[str, ...]]:
    name = identifier(role)
    attributes = await conn.fetchrow(f"SELECT {', '.join(POWERS)} FROM pg_roles WHERE rolname = $1", role)
    if attributes is None:
        try:
            async with conn.transaction():  # another upgrade may create it at the same moment
                await conn.execute(f"CREATE ROLE {name} LOGIN " + " ".join(f"NO{p}" for p in POWERS.values()))
            return True, ()
        except asyncpg.DuplicateObjectError:
            attributes = await conn.fetchrow(f"SELECT {', '.join(POWERS)} FROM pg_roles WHERE rolname = $1", role)
    removed = tuple(power for column, power in POWERS.items() if attributes[column])
    if removed:
        await conn.execute(f"ALTER ROLE {name} " + " ".join(f"NO{p}" for p in removed))
    await conn.execute(f"ALTER ROLE {name} LOGIN")
    return False, removed


async def _grant(conn: asyncpg.Connection, name: str) -> None:
    database = identifier(await conn.fetchval("SELECT current_database()"))
    for statement in (
        # No DDL for anyone but the owner: nothing created in the database or its schema, no temp tables.
        f"REVOKE CREATE, TEMPORARY ON DATABASE {database} FROM PUBLIC",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        f"REVOKE ALL ON DATABASE {database} FROM {name}",
        f"GRANT CONNECT ON DATABASE {database} TO {name}",
        f"REVOKE ALL ON SCHEMA public FROM {name}",
        f"GRANT USAGE ON SCHEMA public TO {name}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {name}",
        f"GRANT {ROW_PRIVILEGES} ON ALL TABLES IN SCHEMA public TO {name}",
        *(f"REVOKE {privileges} ON {table} FROM {name}" for table, privileges in NARROWER.items()),
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {name}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {name}",
    ):
        await conn.execute(statement)
