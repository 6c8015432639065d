"""The operator's command line: `masking ...`, one module per command group.

Everything the HTTP API does is reachable here too; listings print a table,
or with `--json` the same representation the API returns.

Exit codes: 0 success, 1 the system refused or is not in a state to do it
(database down, pool exhausted, session closed), 2 the input is wrong (bad
number, unknown option).
"""
from __future__ import annotations

import argparse
import asyncio
import sys

from bridge import logs
from bridge.cli import (apikeys, asterisk, audit, calls, compliance, edge, incident, keys, numbers, purge, purposes,
                        recordings, service, sessions, subject, webhooks)
from bridge.cli.common import DATABASE_ERRORS, EXIT_BAD_INPUT, EXIT_FAILED, UsageError, database_failure
from bridge.config import ConfigError, Settings
from bridge.numbering import InvalidNumber
from bridge.privacy.crypto import CryptoError
from bridge.privacy.purposes import RegistryError
from bridge.store.errors import StoreError

# In the order `masking --help` lists their commands.
GROUPS = (service, numbers, purposes, sessions, calls, webhooks, keys, apikeys, audit, recordings, subject, incident,
          compliance, asterisk, edge, purge)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = None
    try:
        settings = Settings.from_env()
        logs.configure(settings.log_level)
        with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
            return runner.run(args.handler(settings, args)) or 0
    except (UsageError, InvalidNumber, ConfigError, RegistryError) as exc:
        print(f"masking: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (*DATABASE_ERRORS, StoreError, CryptoError, OSError) as exc:
        message = database_failure(exc, settings.database_url) if settings else None
        print(f"masking: {message or exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def loop_factory(name: str):
    """uvloop's event loop (MASKING_EVENT_LOOP=uvloop, the default) or asyncio's
    own. A call is a few dozen small messages on loopback sockets (ARI, AMI,
    PostgreSQL), and asyncio's loop and transports, in Python, were a third of
    the service's CPU under load; uvloop does that work in C (bench/RESULTS.md)."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="masking", description="Phone-number masking bridge for Asterisk")
    sub = parser.add_subparsers(dest="command", required=True)
    for commands in GROUPS:
        commands.add_commands(sub)
    return parser
