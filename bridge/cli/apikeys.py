"""`masking apikeys`: the keys that authenticate callers of the HTTP API, each limited to its scopes.

A key's token is printed once, when it is created; afterwards the key is named by its prefix.
Each key belongs to an account (a tenant: it sees only that account's sessions); the first key
of an account creates it.
"""
from __future__ import annotations

import json
import sys

from bridge.cli.common import EXIT_FAILED, UsageError, command, emit, group, open_store, operator
from bridge.config import Settings
from bridge.store.apikeys import ACCOUNT_NAME, DEFAULT_ACCOUNT


def add_commands(sub) -> None:
    keys = group(sub, "apikeys", "API keys for the HTTP API")
    p = command(keys, "create", cmd_apikeys_create, "create a key; the token is printed once")
    p.add_argument("--name", required=True)
    p.add_argument("--scope", action="append",
                   choices=["sessions", "numbers", "recordings", "audit", "subjects", "console", "reveal"],
                   help="repeat for several; default: sessions (console, reveal: the web console, docs/console.md)")
    p.add_argument("--account", default=DEFAULT_ACCOUNT,
                   help="the tenant the key acts for: it sees only this account's sessions (default: default)")
    command(keys, "list", cmd_apikeys_list, "list keys (never their tokens)", listing=True)
    p = command(keys, "revoke", cmd_apikeys_revoke, "revoke a key by its prefix")
    p.add_argument("prefix")


async def cmd_apikeys_create(settings: Settings, args) -> int:
    if not ACCOUNT_NAME.fullmatch(args.account):
        raise UsageError("--account must be 1 to 63 of a-z, 0-9, '_', '.', '-', starting with a letter or digit")
    async with open_store(settings) as store:
        token, row = await store.api_keys.create(args.name, sorted(set(args.scope or ["sessions"])),
                                                 account=args.account, by=operator())
    print(json.dumps({"token": token, "name": row["name"], "prefix": row["prefix"], "scopes": row["scopes"],
                      "account": row["account"]}, indent=2))
    print("masking: store the token now; it cannot be shown again", file=sys.stderr)
    return 0


async def cmd_apikeys_list(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        rows = await store.api_keys.list()
    emit(rows, ["prefix", "name", "account", "scopes", "created_at", "revoked_at"], args.json, "api_keys")
    return 0


async def cmd_apikeys_revoke(settings: Settings, args) -> int:
    async with open_store(settings) as store:
        revoked = await store.api_keys.revoke(args.prefix, by=operator())
    if not revoked:
        print("masking: no active key with that prefix", file=sys.stderr)
        return EXIT_FAILED
    print(f"revoked {args.prefix}")
    return 0
