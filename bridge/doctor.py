"""`masking doctor`: check each dependency and say precisely what is wrong."""
from __future__ import annotations

import asyncio
import os
import shutil
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bridge.ami import registration_states
from bridge.ari import AriClient, AriError
from bridge.clock import utcnow
from bridge.config import Settings
from bridge.privacy.crypto import CryptoError, KeyRing
from bridge.stack.kamailio import EdgeRpc, EdgeUnavailable
from bridge.stack.trunks import TrunkError, TrunkPlan, load_plan
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


class AmiRefused(Exception):
    """AMI answered but refused the login or the action."""


async def ami_messages(reader: asyncio.StreamReader, until: str, timeout: float = 3) -> list[dict[str, str]]:
    """AMI messages (header dicts) up to and including the first one whose text contains `until`."""
    messages, block = [], b""
    while True:
        block += await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        text = block.decode(errors="replace")
        block = b""
        messages.append(dict(line.split(": ", 1) for line in text.strip().splitlines() if ": " in line))
        if until in text:
            return messages


@asynccontextmanager
async def ami_session(settings: Settings):
    """A logged-in AMI connection: (banner, reader, writer). OSError/TimeoutError
    when nothing answers, AmiRefused when the login is refused."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(settings.ami_host, settings.ami_port), 3)
    try:
        banner = (await asyncio.wait_for(reader.readline(), 3)).decode(errors="replace").strip()
        writer.write(f"Action: Login\r\nUsername: {settings.ami_user}\r\nSecret: {settings.ami_password}\r\n"
                     "Events: off\r\n\r\n".encode())
        await writer.drain()
        if (await ami_messages(reader, "Response:"))[-1].get("Response") != "Success":
            raise AmiRefused("AMI refused MASKING_AMI_USER/PASSWORD")
        yield banner, reader, writer
    finally:
        writer.close()


async def check_ami(settings: Settings) -> Check:
    try:
        async with ami_session(settings) as (banner, _reader, _writer):
            return Check("ami", True, f"{banner} at {settings.ami_host}:{settings.ami_port}")
    except AmiRefused as exc:
        return Check("ami", False, str(exc))
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        return Check("ami", False, f"cannot connect to AMI at {settings.ami_host}:{settings.ami_port}: "
                                   f"{type(exc).__name__}")


async def ami_action(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, action: str) -> list[dict[str, str]]:
    """Every message of an AMI action's answer (an event list, or the error)."""
    writer.write(f"Action: {action}\r\nActionID: doctor-{action}\r\n\r\n".encode())
    await writer.drain()
    messages = []
    while True:
        message = (await ami_messages(reader, ":", timeout=5))[0]
        messages.append(message)
        if message.get("Response") == "Error" or message.get("EventList") == "Complete":
            return messages


def check_trunks(settings: Settings) -> tuple[list[Check], TrunkPlan | None]:
    """The trunks file (or the default trunks) as Asterisk will be given it, and the TLS certificate."""
    try:
        plan = load_plan(settings)
    except TrunkError as exc:
        return [Check("trunks", False, str(exc))], None
    inbound = "; ".join(f"{t.name} ({t.transport}) from {', '.join(t.match)}" for t in plan.inbound) or "none"
    outbound = "; ".join(f"{t.name} ({t.transport}) to {t.host}:{t.port}" + (", registers" if t.register else "")
                         for t in plan.outbound)
    checks = [Check("trunks", True, f"in: {inbound} | out: {outbound} | counterparts dialed via "
                                    f"{settings.outbound_endpoint}")]
    if settings.asterisk.sip_tls_port:
        checks.append(check_tls_certificate(settings))
    return checks, plan


def check_tls_certificate(settings: Settings) -> Check:
    ast = settings.asterisk
    try:
        cert = x509.load_pem_x509_certificate(Path(ast.tls_cert_file).read_bytes())
        key = serialization.load_pem_private_key(Path(ast.tls_key_file).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        return Check("tls", False, f"cannot read MASKING_TLS_CERT_FILE / MASKING_TLS_KEY_FILE: {exc}")
    if cert.public_key().public_bytes(*_SPKI) != key.public_key().public_bytes(*_SPKI):
        return Check("tls", False, "MASKING_TLS_KEY_FILE is not the key of MASKING_TLS_CERT_FILE")
    days = (cert.not_valid_after_utc - utcnow()).total_seconds() / 86400
    subject = cert.subject.rfc4514_string() or "(no subject)"
    if days <= 0:
        return Check("tls", False, f"certificate {subject} expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    renew = ": renew it" if days <= 14 else ""
    return Check("tls", not renew, f"certificate {subject} on port {ast.sip_tls_port}, valid until "
                                   f"{cert.not_valid_after_utc:%Y-%m-%d} ({days:.0f} days){renew}")


_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


async def check_asterisk_trunks(settings: Settings, plan: TrunkPlan) -> list[Check]:
    """Whether the running Asterisk has these trunks, and each registration's state."""
    try:
        async with ami_session(settings) as (_banner, reader, writer):
            endpoints = await ami_action(reader, writer, "PJSIPShowEndpoints")
            registrations = registration_states(await ami_action(reader, writer, "PJSIPShowRegistrationsOutbound"))
    except (OSError, TimeoutError, asyncio.IncompleteReadError, AmiRefused):
        return []  # the ami check already says why
    loaded = {e.get("ObjectName") for e in endpoints if e.get("Event") == "EndpointList"}
    missing = [name for name in plan.names if name not in loaded]
    checks = []
    if missing:
        checks.append(Check("trunks loaded", False, f"Asterisk has no trunk {', '.join(missing)}: it runs an "
                                                    "older configuration (restart `masking run`, or render and "
                                                    "`masking asterisk cli 'pjsip reload'`)"))
    for trunk in plan.registrations:
        status = registrations.get(trunk.name)
        if status == "Registered":
            checks.append(Check(f"registration {trunk.name}", True, f"registered with {trunk.registrar or trunk.host}"))
        else:
            checks.append(Check(f"registration {trunk.name}", False,
                                f"not registered ({status or 'unknown to Asterisk'}) with "
                                f"{trunk.registrar or trunk.host}: check the carrier's address and the trunk's "
                                "username/password; `masking asterisk cli 'pjsip show registrations'`"))
    return checks


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
    trunks, plan = check_trunks(settings)
    in_asterisk = await check_asterisk_trunks(settings, plan) if plan and ami.ok else []
    return [*ari, ami, *trunks, *in_asterisk, database, check_recording_store(settings), *edge]
