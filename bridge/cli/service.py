"""Running the bridge: `serve`, `serve-agi`, `run` (Asterisk and the database too), `doctor` and `db upgrade`.

Together because a service starts on a current schema: `serve --migrate` and `run` upgrade the database first.
`db upgrade` connects as MASKING_DATABASE_ADMIN_URL's role and makes MASKING_DATABASE_URL's role the service's
least-privileged application role (docs/security.md).
"""
from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import replace

from bridge import memory
from bridge.cli.common import EXIT_FAILED, command, group, open_store
from bridge.config import Settings, require_strong_secrets
from bridge.privacy.crypto import KeyRing
from bridge.store.db import ensure_database
from bridge.store.roles import dsn_user


def add_commands(sub) -> None:
    p = command(sub, "serve", cmd_serve, "run the bridge (ARI app, HTTP API, webhooks)")
    p.add_argument("--migrate", action="store_true", help="create and migrate the database first")
    command(sub, "serve-agi", cmd_serve_agi, "run only the FastAGI fallback (a standby for the dialplan)")
    p = command(sub, "run", cmd_run, "run everything on this machine: Asterisk, database, bridge")
    p.add_argument("--nodes", type=int, default=0, metavar="N",
                   help="N Asterisk nodes behind the Kamailio edge, a bridge each (docs/scaling.md)")
    command(sub, "doctor", cmd_doctor, "check ARI, AMI, database and recording store")

    db = group(sub, "db", "database schema")
    command(db, "upgrade", cmd_db_upgrade, "create the database if missing and apply migrations")


async def cmd_serve(settings: Settings, args) -> int:
    from bridge.service import serve

    require_strong_secrets(settings)
    if args.migrate:
        await cmd_db_upgrade(settings, args)
    memory.snapshot_on_signal(asyncio.get_running_loop(), settings.state_dir)  # SIGUSR2, under PYTHONTRACEMALLOC
    await serve(settings)
    return 0


async def cmd_serve_agi(settings: Settings, _args) -> int:
    from bridge.service import serve_agi

    require_strong_secrets(settings)
    await serve_agi(settings)
    return 0


async def cmd_run(settings: Settings, args) -> int:
    """Asterisk (this project's configuration), database, bridge; Ctrl-C stops all."""
    from bridge.service import serve
    from bridge.stack.asterisk import AsteriskInstance
    from bridge.stack.secrets import secrets_file, with_generated_secrets

    settings, generated = with_generated_secrets(settings)
    if generated:
        print(f"generated {', '.join(generated)} into {secrets_file(settings)} (kept for the next start)",
              file=sys.stderr)
    require_strong_secrets(settings)
    _, created = KeyRing.load_or_create(settings.keys_path)
    if created:
        print(f"created a key ring at {settings.keys_path}: keep it safe, the data is unreadable without it",
              file=sys.stderr)
    await cmd_db_upgrade(settings, args)
    settings.recording_dir.mkdir(parents=True, exist_ok=True)
    if args.nodes:
        from bridge.cli.topology import run_nodes
        from bridge.stack.secrets import secret_env

        os.environ.update(secret_env(settings))  # the nodes' processes read their settings from it
        return await run_nodes(settings, args.nodes)
    asterisk = AsteriskInstance(settings)
    if settings.shared_recording_spool is None:  # its disk is ours: recordings sealed from its spool
        settings = replace(settings, asterisk_recording_dir=asterisk.recording_spool)
    await asyncio.to_thread(asterisk.start)
    print(f"asterisk: SIP udp {settings.asterisk.sip_host}:{settings.asterisk.sip_port}, "
          f"ARI {settings.ari_url}, AMI {settings.ami_host}:{settings.ami_port}, "
          f"counterparts dialed at {settings.asterisk.outbound_host}:{settings.asterisk.outbound_port}; "
          f"HTTP API http://{settings.http_host}:{settings.http_port}; console log {asterisk.console_log}",
          file=sys.stderr)
    memory.snapshot_on_signal(asyncio.get_running_loop(), settings.state_dir)
    try:
        await serve(settings)
    finally:
        await asyncio.to_thread(asterisk.stop)
    return 0


async def cmd_db_upgrade(settings: Settings, _args) -> int:
    if await ensure_database(settings.migration_url):
        print("created database", file=sys.stderr)
    async with open_store(settings, settings.migration_url) as store:
        audit_key = store.keys.audit_active
        applied = await store.schema.upgrade()
        if store.keys.audit_active != audit_key:
            print(f"added audit key {store.keys.audit_active} to {settings.keys_path}: copy the key file to every"
                  " host that runs the service", file=sys.stderr)
        print("applied: " + (", ".join(applied) if applied else "nothing, schema is current"), file=sys.stderr)
        role, password = dsn_user(settings.database_url)
        setup = None
        if settings.database_admin_url and role is not None:
            setup = await store.roles.grant_application_role(role, password)
    if setup is None:
        print("no application role set up: the service connects with whatever rights MASKING_DATABASE_URL's role"
              " has; set MASKING_DATABASE_ADMIN_URL, and a user of its own in MASKING_DATABASE_URL, to run it"
              " least-privileged (docs/security.md)", file=sys.stderr)
        return 0
    removed = f"; removed {', '.join(setup.removed_powers)}" if setup.removed_powers else ""
    print(f"application role {setup.role}: {'created' if setup.created else 'exists'}, rows only,"
          f" audit_log append-only{removed}", file=sys.stderr)
    return 0


async def cmd_doctor(settings: Settings, _args) -> int:
    from bridge.doctor import run_checks

    results = await run_checks(settings)
    width = max(len(r.name) for r in results)
    for r in results:
        print(f"{'ok ' if r.ok else 'FAIL'} {r.name:<{width}}  {r.detail}")
    return 0 if all(r.ok for r in results) else EXIT_FAILED
