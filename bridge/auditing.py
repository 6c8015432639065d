"""The audit trail's life outside the database: checkpoints of its head, and the config row at start.

A checkpoint (bridge/privacy/checkpoint.py) is appended to a file only the
service's user can read (0600, in a 0700 folder), and optionally sent to
syslog and POSTed to a URL, so a copy sits where the database's administrators
cannot reach. The service writes one when it starts and then every
`audit_checkpoint_seconds` if the trail grew, after checking that the rows
since its last checkpoint are still there and intact: deleting or rewriting
rows is logged (`audit.tampered`) within an interval, and `masking audit
verify` shows it for good.
"""
from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import aiohttp
import asyncpg

from bridge.clock import utcnow
from bridge.config import Settings
from bridge.logs import get_logger
from bridge.privacy.audit import (GENESIS, ChainWalk, Problem, Verification, changed_settings, config_snapshot,
                                  fingerprint)
from bridge.privacy.checkpoint import (
    Checkpoint, CheckpointError, hashes_by_seq, read_checkpoints, sign_checkpoint,
)
from bridge.privacy.crypto import KeyRing
from bridge.store import Store
from bridge.store.errors import StoreError, StoreUnavailable

log = get_logger("bridge.auditing")
SYSLOG_PRIORITY = 10 * 8 + 5  # facility authpriv, severity notice
SYSLOG_TAG = "masking-audit"


class CheckpointDeliveryFailed(Exception):
    """A checkpoint reached the file but not syslog or the URL."""


# -- the file -------------------------------------------------------------------------------------
def append_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Append one line, durably, to a file readable by its owner only (tightened if it was looser)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, checkpoint.to_line().encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoints(path: Path, keys: KeyRing) -> list[Checkpoint]:
    """Every checkpoint in `path`, signatures checked (CheckpointError names a bad line); [] if none."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return read_checkpoints(keys, text.splitlines())


# -- the copies elsewhere -----------------------------------------------------------------------
def send_syslog(address: str, checkpoint: Checkpoint) -> None:
    """One datagram to a syslog socket (`/dev/log`) or a `host:port` over UDP."""
    message = f"<{SYSLOG_PRIORITY}>{SYSLOG_TAG}: {checkpoint.to_line().strip()}".encode()
    if address.startswith("/"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.send(message)
        return
    host, _, port = address.rpartition(":")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(message, (host.strip("[]"), int(port)))


async def post_checkpoint(url: str, checkpoint: Checkpoint) -> None:
    """POST the checkpoint's line as JSON; no redirects followed, the receiver's answer never repeated."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            async with http.post(url, data=checkpoint.to_line(), allow_redirects=False,
                                 headers={"Content-Type": "application/json"}) as response:
                if response.status >= 300:
                    raise CheckpointDeliveryFailed(f"the checkpoint URL answered {response.status}")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise CheckpointDeliveryFailed(f"the checkpoint URL is unreachable: {type(exc).__name__}") from None


# -- taking one -------------------------------------------------------------------------------
async def verify_trail(store: Store, checkpoints_path: Path,
                       expected_head: bytes | None = None) -> tuple[Verification, list[Checkpoint]]:
    """The whole chain walked with the audit keys, against every checkpoint in
    `checkpoints_path` (each must still be there with its hash) and, given,
    a head anchored by hand: what `masking audit verify` and the console's
    privacy desk both report. Raises CheckpointError for a file that cannot
    be trusted."""
    checkpoints = await asyncio.to_thread(load_checkpoints, checkpoints_path, store.keys)
    walk = ChainWalk(expected_head, store.keys.audit_mac, hashes_by_seq(checkpoints))
    async for row in store.audit.walk():
        if not walk.add(row):
            break
    return walk.result(), checkpoints


async def take_checkpoint(store: Store, settings: Settings, host: str | None = None) -> tuple[Checkpoint, list[str]]:
    """Sign the trail's head and write it to the file, then to syslog and the URL if set.
    Returns it, and what went wrong with the copies (the file is written, or this raises)."""
    seq, head_hash = await store.audit.head()
    checkpoint = sign_checkpoint(store.keys, seq, head_hash, utcnow(), host or socket.gethostname())
    await asyncio.to_thread(append_checkpoint, settings.audit_checkpoint_path, checkpoint)
    failures = []
    if settings.audit_checkpoint_syslog:
        try:
            await asyncio.to_thread(send_syslog, settings.audit_checkpoint_syslog, checkpoint)
        except OSError as exc:
            failures.append(f"syslog: {type(exc).__name__}")
    if settings.audit_checkpoint_url:
        try:
            await post_checkpoint(settings.audit_checkpoint_url, checkpoint)
        except CheckpointDeliveryFailed as exc:
            failures.append(str(exc))
    return checkpoint, failures


async def check_since(store: Store, last: Checkpoint) -> Verification:
    """The checkpointed row still there with its hash, and every row after it intact and linked."""
    found = await store.audit.hash_at(last.seq) if last.seq else last.hash
    if found != last.hash:
        problem = Problem.DELETED if found is None else Problem.REWRITTEN
        return Verification(False, 0, 0, GENESIS, last.seq, problem, f"checkpointed row {last.seq}: {problem}")
    walk = ChainWalk(mac=store.keys.audit_mac, start=(last.seq, last.hash))
    async for row in store.audit.walk(after=last.seq):
        if not walk.add(row):
            break
    return walk.result()


async def checkpoint_periodically(store: Store, settings: Settings) -> None:
    """A checkpoint at start, then every `audit_checkpoint_seconds` if the trail
    grew; tampering since the last checkpoint is logged."""
    path, host = settings.audit_checkpoint_path, socket.gethostname()
    try:
        earlier = await asyncio.to_thread(load_checkpoints, path, store.keys)
    except (CheckpointError, OSError) as exc:
        log.error("audit.checkpoints_unreadable", path=str(path), error=str(exc))
        earlier = []
    last = earlier[-1] if earlier else None
    while True:
        try:
            if last is not None:
                since = await check_since(store, last)
                if not since.ok:
                    log.error("audit.tampered", seq=since.first_bad_seq, problem=str(since.problem),
                              checkpoint_seq=last.seq)
            if last is None or await store.audit.head() != (last.seq, last.hash):
                last, failures = await take_checkpoint(store, settings, host)
                log.info("audit.checkpoint", seq=last.seq)
                for failure in failures:
                    log.warning("audit.checkpoint_not_delivered", error=failure)
        except StoreUnavailable:
            log.warning("audit.checkpoint_database_unavailable")
        except Exception as exc:
            log.error("audit.checkpoint_failed", error=type(exc).__name__)
        await asyncio.sleep(settings.audit_checkpoint_seconds)


# -- configuration ----------------------------------------------------------------------------
async def audit_configuration(store: Store, settings: Settings) -> bool:
    """Write a config.changed row if this host's settings differ from the last
    ones recorded (True if written). An audit failure never stops a start: it
    is logged, and the next start compares again."""
    host = socket.gethostname()
    snapshot = config_snapshot(settings, lambda value: store.keys.keyed_digest("setting", value.encode()))
    current = fingerprint(snapshot)
    try:
        last = await store.audit.list(action="config.changed", target_id=host, limit=1)
        before = last[0].details if last else {}
        if before.get("fingerprint") == current:
            return False
        changed = changed_settings(before.get("settings", {}), snapshot)
        await store.audit.append("service", "config.changed", "host", host, source=f"service@{host}",
                                 details={"fingerprint": current, "changed": changed, "settings": snapshot})
    except (StoreError, asyncpg.PostgresError) as exc:
        log.warning("audit.config_failed", error=type(exc).__name__)
        return False
    log.info("audit.config_changed", changed=len(changed))
    return True
