"""`masking doctor`: check each dependency and say precisely what is wrong."""
from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass

import asyncpg

from bridge.ari import AriClient, AriError
from bridge.config import Settings
from bridge.privacy.crypto import CryptoError, KeyRing
from bridge.stack.kamailio import EdgeRpc, EdgeUnavailable
from bridge.store import Store
from bridge.store.errors import StoreUnavailable
from bridge.store.schema import migrations


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


async def check_ari(settings: Settings) -> list[Check]:
    async with AriClient(settings.ari_url, settings.ari_user, settings.ari_password, settings.ari_app,
                         timeout=3) as ari:
        try:
            info = await ari.info()
        except AriError as exc:
            if exc.status == 401:
                return [Check("ari", False, f"{settings.ari_url} refused MASKING_ARI_USER/PASSWORD (401)")]
            return [Check("ari", False, f"cannot reach ARI at {settings.ari_url}: {exc}")]
        version = info.get("system", {}).get("version", "?")
        checks = [Check("ari", True, f"Asterisk {version} at {settings.ari_url}")]
        try:
            await ari.application()
            checks.append(Check("ari app", True, f"Stasis app '{settings.ari_app}' is registered"))
        except AriError:
            checks.append(Check("ari app", False, f"Stasis app '{settings.ari_app}' is not registered: "
                                                  "is `masking serve` running and connected?"))
        return checks


async def check_ami(settings: Settings) -> Check:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(settings.ami_host, settings.ami_port), timeout=3)
    except (OSError, TimeoutError) as exc:
        return Check("ami", False, f"cannot connect to AMI at {settings.ami_host}:{settings.ami_port}: "
                                   f"{type(exc).__name__}")
    try:
        banner = (await asyncio.wait_for(reader.readline(), 3)).decode(errors="replace").strip()
        writer.write(f"Action: Login\r\nUsername: {settings.ami_user}\r\nSecret: {settings.ami_password}\r\n\r\n"
                     .encode())
        await writer.drain()
        reply = b""
        while not reply.endswith(b"\r\n\r\n"):
            reply += await asyncio.wait_for(reader.read(1024), 3)
        if b"Success" not in reply:
            return Check("ami", False, "AMI refused MASKING_AMI_USER/PASSWORD")
        return Check("ami", True, f"{banner} at {settings.ami_host}:{settings.ami_port}")
    except (OSError, TimeoutError) as exc:
        return Check("ami", False, f"AMI did not answer the login: {type(exc).__name__}")
    finally:
        writer.close()


async def check_database(settings: Settings) -> Check:
    try:
        keys = KeyRing.load(settings.keys_path)
    except CryptoError as exc:
        return Check("keys", False, str(exc))
    store = await Store.connect(settings.database_url, keys, settings.db_timeout)
    try:
        try:
            await store.ping()
        except StoreUnavailable as exc:
            return Check("database", False, f"cannot connect to MASKING_DATABASE_URL: {exc}")
        except asyncpg.InvalidCatalogNameError:
            return Check("database", False, "the database does not exist: run `masking db upgrade`")
        except asyncpg.InvalidAuthorizationSpecificationError:
            return Check("database", False, "PostgreSQL refused the user in MASKING_DATABASE_URL")
        try:
            applied = {r["version"] for r in await store.pool.fetch("SELECT version FROM schema_migrations")}
        except asyncpg.UndefinedTableError:
            return Check("database", False, "schema not created: run `masking db upgrade`")
        pending = [name for version, name, _ in migrations() if version not in applied]
        if pending:
            return Check("database", False, f"pending migrations {pending}: run `masking db upgrade`")
        return Check("database", True, "reachable, schema current")
    finally:
        await store.close()


def check_recording_store(settings: Settings) -> Check:
    path = settings.recording_dir
    if not path.exists():
        return Check("recordings", False, f"{path} does not exist (MASKING_RECORDING_DIR)")
    if not os.access(path, os.W_OK):
        return Check("recordings", False, f"{path} is not writable by this user")
    free_gb = shutil.disk_usage(path).free / 1e9
    if free_gb < 1:
        return Check("recordings", False, f"{path}: only {free_gb:.2f} GB free")
    return Check("recordings", True, f"{path} writable, {free_gb:.0f} GB free")


async def check_edge(settings: Settings) -> list[Check]:
    """Behind the Kamailio edge (MASKING_EDGE_RPC_PORT): each node as the edge sees it."""
    if not settings.edge.rpc_port:
        return []
    try:
        nodes = await EdgeRpc.of(settings).nodes()
    except EdgeUnavailable as exc:
        return [Check("edge", False, str(exc))]
    checks = [Check("edge", any(n.takes_calls for n in nodes),
                    f"{sum(n.takes_calls for n in nodes)} of {len(nodes)} nodes take calls")]
    return checks + [Check(f"edge {n.name}", n.state != "inactive", f"{n.uri} {n.state}") for n in nodes]


async def run_checks(settings: Settings) -> list[Check]:
    ari, ami, database, edge = await asyncio.gather(check_ari(settings), check_ami(settings),
                                                    check_database(settings), check_edge(settings))
    return [*ari, ami, database, check_recording_store(settings), *edge]
