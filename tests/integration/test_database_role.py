"""The service's database role, attacked from the inside: whoever gets the
service's credentials (a bug, a leaked .env, a compromised host) can read and
write rows, and nothing else: no rewriting the audit trail, no DDL, no
superuser tricks. `masking db upgrade` makes the role; the stack's service runs as it."""
from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import asyncpg
import pytest

from bridge.store import Store
from tests.integration.conftest import query
from tests.support.keys import shared_keys
from tests.support.postgres import Cluster
from tests.support.stack import database_env, migrate

PWNED = Path(f"/tmp/masking-pwned-{uuid.uuid4().hex}")
EVIL = f"masking_evil_{uuid.uuid4().hex[:8]}"

REFUSED = {
    "delete-the-audit-log": "DELETE FROM audit_log",
    "delete-the-newest-audit-row": "DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)",
    "update-the-audit-log": "UPDATE audit_log SET reason = 'nothing to see'",
    "truncate-the-audit-log": "TRUNCATE audit_log",
    "truncate-another-table": "TRUNCATE calls CASCADE",
    "create-a-table": "CREATE TABLE loot (number text)",
    "create-a-temporary-table": "CREATE TEMP TABLE loot (number text)",
    "create-a-schema": "CREATE SCHEMA loot",
    "drop-the-append-only-trigger": "DROP TRIGGER audit_log_append_only ON audit_log",
    "disable-the-append-only-trigger": "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
    "switch-triggers-off": "SET session_replication_role = replica",
    "copy-to-program": f"COPY (SELECT 1) TO PROGRAM 'touch {PWNED}'",
    "copy-to-a-server-file": f"COPY audit_log TO '{PWNED}'",
    "create-a-superuser": f"CREATE ROLE {EVIL} SUPERUSER LOGIN",
    "grant-itself-more-then-delete": "GRANT DELETE ON audit_log TO CURRENT_USER; DELETE FROM audit_log",
    "record-a-migration": "INSERT INTO schema_migrations (version, name) VALUES (9999, 'evil')",
}


async def execute_as(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def a_few_audit_rows(dsn: str) -> None:
    store = await Store.connect(dsn, shared_keys())
    try:
        for n in range(3):
            await store.audit.append("cli:test", "recording.read", "recording", str(n), source="cli@test")
    finally:
        await store.close()


@pytest.mark.parametrize("sql", REFUSED.values(), ids=REFUSED.keys())
def test_the_application_role_is_refused(app_db, sql):
    asyncio.run(a_few_audit_rows(app_db.app))
    before = query(app_db.admin, "SELECT seq, hash FROM audit_log ORDER BY seq")

    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            asyncio.run(execute_as(app_db.app, sql))
    finally:  # had it worked, leave nothing behind in the shared cluster
        query(app_db.admin, f"DROP ROLE IF EXISTS {EVIL}")

    assert query(app_db.admin, "SELECT seq, hash FROM audit_log ORDER BY seq") == before
    assert not PWNED.exists()


def test_the_application_role_reads_and_writes_what_the_service_needs(app_db):
    async def work():
        store = await Store.connect(app_db.app, shared_keys())
        try:
            number = f"+65640{uuid.uuid4().int % 10**5:05d}"
            await store.numbers.add(number)
            entry = await store.audit.append("cli:test", "number.added", "number", "x", source="cli@test")
            assert await store.roles.excess_privileges() == []
            return entry, await store.audit.list(limit=1)
        finally:
            await store.close()

    entry, newest = asyncio.run(work())
    assert newest[0].seq == entry.seq


def test_the_schema_owner_is_refused_audit_rewrites_too_unless_it_switches_the_trigger_off(app_db):
    asyncio.run(a_few_audit_rows(app_db.app))
    for sql in ("DELETE FROM audit_log", "UPDATE audit_log SET reason = 'x'", "TRUNCATE audit_log"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            asyncio.run(execute_as(app_db.admin, sql))


def local_tcp_ports(pid: int) -> set[int]:
    """The local ports of the TCP sockets process `pid` holds (from /proc)."""
    inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")
              if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")}
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_the_stacks_service_connects_as_its_application_role_which_is_no_superuser(stack):
    ports = local_tcp_ports(stack.service.pid)
    sessions = query(stack.dsn, "SELECT a.client_port, a.usename, r.rolsuper FROM pg_stat_activity a"
                                " JOIN pg_roles r ON r.rolname = a.usename WHERE a.datname = current_database()")
    theirs = {(s["usename"], s["rolsuper"]) for s in sessions if s["client_port"] in ports}
    assert theirs == {(stack.app_dsn.split("//")[1].split("@")[0], False)}, "the service holds its lease at least"


def test_upgrading_takes_superuser_and_other_powers_from_an_existing_application_role(app_db):
    asyncio.run(execute_as(app_db.admin, f'ALTER ROLE "{app_db.role}" SUPERUSER CREATEDB CREATEROLE'))
    asyncio.run(execute_as(app_db.admin, f'GRANT DELETE, TRUNCATE ON audit_log TO "{app_db.role}"'))

    migrate(app_db.env)

    [role] = query(app_db.admin, "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1",
                   app_db.role)
    assert role == {"rolsuper": False, "rolcreatedb": False, "rolcreaterole": False}
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        asyncio.run(execute_as(app_db.app, "DELETE FROM audit_log"))


def test_a_single_url_setup_keeps_working_and_its_excess_powers_are_named(dsn):
    """No admin URL (the `dsn` fixture migrates with one): one role does both, and the service says so at start."""
    async def excess():
        store = await Store.connect(dsn, shared_keys())
        try:
            return await store.roles.excess_privileges()
        finally:
            await store.close()

    found = asyncio.run(excess())
    assert "SUPERUSER" in found and "may update or delete audit_log" in found


def test_a_password_in_the_application_url_logs_in_with_scram_and_never_travels_in_clear():
    cluster = Cluster()
    try:
        cluster.start()
        hba = cluster.data / "pg_hba.conf"
        hba.write_text("host all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        asyncio.run(execute_as(cluster.dsn(), "SELECT pg_reload_conf()"))
        password = "s3cret-" + uuid.uuid4().hex
        env = database_env(cluster.dsn(), "masking", "masking_app")
        env["MASKING_DATABASE_URL"] = env["MASKING_DATABASE_URL"].replace("masking_app@", f"masking_app:{password}@")
        migrate(env)

        [stored] = query(cluster.dsn("masking"), "SELECT rolpassword FROM pg_authid WHERE rolname = 'masking_app'")
        assert stored["rolpassword"].startswith("SCRAM-SHA-256$4096:") and password not in stored["rolpassword"]
        asyncio.run(execute_as(env["MASKING_DATABASE_URL"], "SELECT 1"))
        with pytest.raises(asyncpg.InvalidPasswordError):
            asyncio.run(execute_as(env["MASKING_DATABASE_URL"].replace(password, "wrong"), "SELECT 1"))
        assert password not in (cluster.dir / "server.log").read_text()
    finally:
        cluster.destroy()
