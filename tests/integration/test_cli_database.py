"""The CLI against a database that is not right: one line saying what is wrong
and what to do, exit code 1, no traceback, no password, whatever the command.

The wrong-password case runs a PostgreSQL cluster of its own with password
authentication; the shared server is never touched.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.support.keys import keys_file
from tests.support.ports import free_port
from tests.support.postgres import Cluster
from tests.support.stack import ADMIN_DSN, create_database, drop_database

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cret-" + uuid.uuid4().hex[:8]


def masking(dsn: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MASKING_DATABASE_URL": dsn, "MASKING_KEYS_FILE": str(keys_file()),
           "MASKING_DB_TIMEOUT": "2"}
    return subprocess.run([sys.executable, "-m", "bridge.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


def assert_one_line_failure(result: subprocess.CompletedProcess, *expected: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("masking: "), result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    assert SECRET not in lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def unmigrated_database():
    name = f"masking_unmigrated_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    asyncio.run(create_database(name))
    yield ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    asyncio.run(drop_database(name))


@pytest.fixture(scope="module")
def password_cluster():
    """A cluster whose TCP connections need the password SECRET."""
    cluster = Cluster()
    cluster.start()

    async def require_password():
        conn = await asyncpg.connect(cluster.dsn())
        try:
            await conn.execute(f"ALTER USER postgres PASSWORD '{SECRET}'")
            hba = cluster.data / "pg_hba.conf"
            hba.write_text(hba.read_text().replace("trust", "scram-sha-256"))
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()

    try:
        asyncio.run(require_password())
        yield cluster
    finally:
        cluster.destroy()


@pytest.mark.parametrize("command", [("numbers", "list"), ("sessions", "list"), ("calls", "list"),
                                     ("audit", "verify")])
def test_a_missing_database_is_one_line_naming_it_and_the_fix(command):
    name = f"masking_missing_{uuid.uuid4().hex[:8]}"
    result = masking(ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}", *command)
    assert_one_line_failure(result, f'database "{name}" does not exist', "masking db upgrade")


def test_an_unmigrated_schema_is_one_line_telling_to_upgrade(unmigrated_database):
    result = masking(unmigrated_database, "numbers", "list")
    assert_one_line_failure(result, "is not migrated", "masking db upgrade")


def test_a_wrong_password_is_one_line_and_never_repeats_the_password(password_cluster):
    dsn = f"postgresql://postgres:wrong-{SECRET}@127.0.0.1:{password_cluster.port}/postgres"
    for command in (("numbers", "list"), ("db", "upgrade")):
        line = assert_one_line_failure(masking(dsn, *command), 'refused user "postgres"', "password")
        assert "wrong-" not in line


def test_the_right_password_gets_through(password_cluster):
    dsn = f"postgresql://postgres:{SECRET}@127.0.0.1:{password_cluster.port}/masking_cli"
    result = masking(dsn, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert masking(dsn, "numbers", "list").returncode == 0


def test_an_unreachable_server_is_one_line_naming_host_and_port():
    port = free_port()  # nothing listens there
    for command in (("numbers", "list"), ("db", "upgrade")):
        result = masking(f"postgresql://postgres:{SECRET}@127.0.0.1:{port}/masking", *command)
        assert_one_line_failure(result, f"cannot reach PostgreSQL on 127.0.0.1:{port}")


def test_an_unknown_host_is_one_line_too():
    result = masking("postgresql://postgres@no-such-host.invalid:5432/masking", "numbers", "list")
    assert_one_line_failure(result, "cannot reach PostgreSQL on no-such-host.invalid:5432")
