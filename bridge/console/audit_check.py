"""The audit trail's verification, as the privacy desk shows it: the whole
hash chain walked (as `masking audit verify` does), the result kept in this
process for a few minutes so each view of the desk does not walk it again."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web

from bridge.clock import utcnow
from bridge.auditing import verify_trail
from bridge.console.context import settings, store
from bridge.privacy.audit import GENESIS, Verification
from bridge.privacy.checkpoint import CheckpointError

FRESH_FOR = timedelta(minutes=5)


@dataclass(frozen=True)
class AuditCheck:
    result: Verification
    at: datetime


AUDIT_CHECK = web.AppKey("console_audit_check", dict)


async def verify_now(request: web.Request) -> AuditCheck:
    """As `masking audit verify`: keyed rows, and every checkpoint still there."""
    try:
        result, _ = await verify_trail(store(request), settings(request).audit_checkpoint_path)
    except CheckpointError as exc:
        result = Verification(False, 0, 0, GENESIS, message=f"the checkpoints cannot be trusted: {exc}")
    check = AuditCheck(result, utcnow())
    request.app[AUDIT_CHECK]["latest"] = check
    return check


async def latest_check(request: web.Request) -> AuditCheck:
    """The last verification if recent, else a new one."""
    latest = request.app[AUDIT_CHECK].get("latest")
    if latest is None or utcnow() - latest.at > FRESH_FOR:
        latest = await verify_now(request)
    return latest
