"""The audit trail's verification, as the privacy desk shows it: the whole
hash chain walked (as `masking audit verify` does), the result kept in this
process for a few minutes so each view of the desk does not walk it again."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web

from bridge.clock import utcnow
from bridge.console.context import store
from bridge.privacy.audit import ChainWalk, Verification

FRESH_FOR = timedelta(minutes=5)


@dataclass(frozen=True)
class AuditCheck:
    result: Verification
    at: datetime


AUDIT_CHECK = web.AppKey("console_audit_check", dict)


async def verify_now(request: web.Request) -> AuditCheck:
    walk = ChainWalk()
    async for row in store(request).audit.walk():
        if not walk.add(row):
            break
    check = AuditCheck(walk.result(), utcnow())
    request.app[AUDIT_CHECK]["latest"] = check
    return check


async def latest_check(request: web.Request) -> AuditCheck:
    """The last verification if recent, else a new one."""
    latest = request.app[AUDIT_CHECK].get("latest")
    if latest is None or utcnow() - latest.at > FRESH_FOR:
        latest = await verify_now(request)
    return latest
