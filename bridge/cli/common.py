"""What every command group shares: exit codes, bad input, who the operator is, the store, and how results print.

In one place, so a group's module holds only its own commands and every listing prints the same way.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import urllib.parse
import uuid
from contextlib import asynccontextmanager

import asyncpg

from bridge.config import Settings
from bridge.privacy.audit import Actor
from bridge.privacy.crypto import KeyRing
from bridge.store import Store
from bridge.store.errors import StoreUnavailable

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input from the operator: exit code 2."""


# What PostgreSQL says when the schema is older than the code (or absent).
UNMIGRATED = (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError, asyncpg.UndefinedFunctionError,
              asyncpg.UndefinedObjectError)
REFUSED = (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)
UNREACHABLE = (StoreUnavailable, ConnectionError, TimeoutError, socket.gaierror, asyncpg.CannotConnectNowError,
               asyncpg.PostgresConnectionError, asyncpg.InterfaceError)
DATABASE_ERRORS = (asyncpg.PostgresError, *UNREACHABLE)


def database_failure(exc: BaseException, dsn: str) -> str | None:
    """One line an operator can act on for a database error (None: not one).

    Names the server, database and user from `dsn`, never its password, and
    never PostgreSQL's own message text, which can quote the values of a row.
    """
    where = urllib.parse.urlsplit(dsn)
    server = f"{where.hostname or 'localhost'}:{where.port or 5432}"
    database = where.path.lstrip("/") or "(none)"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return (f'database "{database}" does not exist on {server}: '
                "run `masking db upgrade` (it creates and migrates it)")
    if isinstance(exc, UNMIGRATED):
        return (f'database "{database}" on {server} is not migrated ({type(exc).__name__}): '
                "run `masking db upgrade`")
    if isinstance(exc, REFUSED):
        return (f'PostgreSQL on {server} refused user "{where.username or getpass.getuser()}": '
                "check the user and password in MASKING_DATABASE_URL")
    if isinstance(exc, UNREACHABLE):
        reason = str(exc).removeprefix("database unavailable: ") if isinstance(exc, StoreUnavailable) \
            else type(exc).__name__
        return f"cannot reach PostgreSQL on {server} ({reason}): is it running, and is MASKING_DATABASE_URL right?"
    if isinstance(exc, asyncpg.PostgresError):
        return (f'database "{database}" on {server} refused the operation '
                f"({type(exc).__name__}, SQLSTATE {exc.sqlstate})")
    return None


def command(group, name: str, handler, help_text: str, listing: bool = False) -> argparse.ArgumentParser:
    """`name` under `group`, run by `handler`; a listing also takes --json."""
    p = group.add_parser(name, help=help_text)
    p.set_defaults(handler=handler)
    if listing:
        p.add_argument("--json", action="store_true", help="print JSON, as the HTTP API returns it")
    return p


def group(sub, name: str, help_text: str):
    """`masking <name> ...`: a command group whose subcommand is required."""
    return sub.add_parser(name, help=help_text).add_subparsers(dest=f"{name}_command", required=True)


@asynccontextmanager
async def open_store(settings: Settings, dsn: str | None = None):
    """The store over MASKING_DATABASE_URL (the application role), or over `dsn`."""
    store = await Store.connect(dsn or settings.database_url, KeyRing.load(settings.keys_path), settings.db_timeout,
                                default_webhook_url=settings.webhook_url or None)
    try:
        yield store
    finally:
        await store.close()


def emit(items: list[dict], columns: list[str], as_json: bool, key: str | None = None) -> None:
    """A table of `columns`, or JSON (an object under `key`, or the single item)."""
    if as_json:
        print(json.dumps({key: items} if key else items[0], indent=2, default=str))
        return
    cells = [[("-" if item.get(c) is None else str(item.get(c))) for c in columns] for item in items]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def parse_uuid(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise UsageError(f"{what} must be a UUID") from None


def operator() -> Actor:
    """The person at this terminal, for the audit rows their changes write."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = f"uid{os.getuid()}"
    return Actor(f"cli:{user}", f"cli@{socket.gethostname()}")


