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
from bridge.cli import (apikeys, asterisk, audit, calls, compliance, edge, incident, keys, numbers, purge, recordings,
                        service, sessions, subject, webhooks)
from bridge.cli.common import DATABASE_ERRORS, EXIT_BAD_INPUT, EXIT_FAILED, UsageError, database_failure
from bridge.config import ConfigError, Settings
from bridge.numbering import InvalidNumber
from bridge.privacy.crypto import CryptoError
from bridge.store.errors import StoreError

# In the order `masking --help` lists their commands.
GROUPS = (service, numbers, sessions, calls, webhooks, keys, apikeys, audit, recordings, subject, incident,
          compliance, asterisk, edge, purge)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = None
    try:
        settings = Settings.from_env()
        logs.configure(settings.log_level)
        return asyncio.run(args.handler(settings, args)) or 0
    except (UsageError, InvalidNumber, ConfigError) as exc:
        print(f"masking: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (*DATABASE_ERRORS, StoreError, CryptoError, OSError) as exc:
        message = database_failure(exc, settings.database_url) if settings else None
        print(f"masking: {message or exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="masking", description="Phone-number masking bridge for Asterisk")
    sub = parser.add_subparsers(dest="command", required=True)
    for commands in GROUPS:
        commands.add_commands(sub)
    return parser
