"""`masking compliance report` on real PostgreSQL and a real checkpoint file:
the open and overdue obligations it lists are the database's, the checkpoint's
age is the file's, and the exhibit written is private and holds no number."""
from __future__ import annotations

import asyncio
import json
import stat
from datetime import datetime, timedelta, timezone

from tests.integration.test_audit import operator  # noqa: F401 (fixture; `store` comes from conftest)
from tests.integration.test_cli import masking


async def run(operator, *args: str, **env: str):
    return await asyncio.to_thread(masking, operator, *args, **env)


async def test_the_report_shows_overdue_requests_and_incidents_and_the_checkpoint_it_finds(store, operator, tmp_path):
    late = (datetime.now(timezone.utc) - timedelta(days=45)).date().isoformat()
    await run(operator, "subject", "request", "open", "--kind", "access", "+6591117777", "--received", late)
    await run(operator, "subject", "request", "open", "--kind", "erasure", "+6591118888")
    await run(operator, "incident", "open", "lost laptop", "--aware", late)
    before = await run(operator, "compliance", "report", "--json")
    await run(operator, "audit", "checkpoint")
    safe = {"MASKING_PURPOSES": "delivery_order", "MASKING_RECORD_BY_DEFAULT": "false",
            **{name: f"{name.lower()}-0123456789abcdef".replace("_", "-") for name in
               ("MASKING_ARI_PASSWORD", "MASKING_AMI_PASSWORD", "MASKING_WEBHOOK_SECRET", "MASKING_AGI_SECRET")}}
    after = await run(operator, "compliance", "report", "--json", **safe)
    exhibit = tmp_path / "exhibit.md"
    printed = await run(operator, "compliance", "report", "--out", str(exhibit), "--strict",
                        MASKING_RETAIN_RECORDINGS_DAYS="never")

    assert before.returncode == 0, before.stderr
    before = json.loads(before.stdout)
    checks = {c["name"]: c["ok"] for c in before["checks"]}
    assert checks["checkpoint_recent"] is False and before["audit_checkpoint"]["at"] is None
    assert (before["requests"]["open"], len(before["requests"]["overdue"])) == (2, 1)
    assert before["requests"]["overdue"][0]["subject"] == "+65****7777"
    assert (before["incidents"]["open"], before["incidents"]["overdue"][0]["overdue"]) == (1, ["incident_assessment"])
    after = json.loads(after.stdout)
    assert after["passed"], [c for c in after["checks"] if not c["ok"]]
    assert 0 <= after["audit_checkpoint"]["age_seconds"] < 600
    assert printed.returncode == 1, "--strict fails on a failing check"
    assert "| retention_recordings | FAIL |" in printed.stdout and exhibit.read_text() == printed.stdout
    assert stat.S_IMODE(exhibit.stat().st_mode) == 0o600
    for text in (printed.stdout, json.dumps(before), json.dumps(after)):
        assert "91117777" not in text and "91118888" not in text
