"""`masking compliance report`: the assessor's exhibit (bridge/privacy/compliance.py):
pass or fail for each risky setting, the audit trail's last checkpoint, open and
overdue requests and incidents, purposes and retention in force.

Text (markdown, printable) by default, `--json` for machines; `--strict` exits 1
when a check fails (for a deployment pipeline).
"""
from __future__ import annotations

import json
from pathlib import Path

from bridge.cli.common import EXIT_FAILED, UsageError, command, group, open_store
from bridge.clock import utcnow
from bridge.config import Settings
from bridge.files import open_private


def add_commands(sub) -> None:
    compliance = group(sub, "compliance", "the PDPA exhibit: risky settings, audit checkpoints, open obligations")
    p = command(compliance, "report", cmd_report, "pass or fail per risky setting, and what is open or overdue",
                listing=True)
    p.add_argument("--out", type=Path, help="also write it to this file (0600)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a check fails")


async def cmd_report(settings: Settings, args) -> int:
    from bridge.privacy.checkpoint import CheckpointError, read_checkpoints
    from bridge.privacy.compliance import Facts, render_markdown, report
    from bridge.privacy.crypto import KeyRing

    if args.out is not None and args.out.exists():
        raise UsageError(f"{args.out} exists; name another file with --out")
    now = utcnow()
    checkpoint_at, problem = None, None
    path = settings.audit_checkpoint_path
    try:
        with open(path, encoding="utf-8") as lines:
            checkpoints = read_checkpoints(KeyRing.load(settings.keys_path), lines)
        checkpoint_at = max((c.at for c in checkpoints), default=None)
    except FileNotFoundError:
        problem = f"no checkpoint file at {path}"
    except CheckpointError as exc:
        problem = f"the checkpoint file cannot be trusted: {exc}"
    async with open_store(settings) as store:
        requests = await store.subjects.list_requests("open", limit=1000)
        incidents = [i for i in await store.incidents.list(limit=1000) if i.status != "closed"]
    facts = Facts(now, checkpoint_at, problem if checkpoint_at is None else None,
                  tuple(r.to_json(now) for r in requests), tuple(i.to_json(now) for i in incidents))
    document = report(settings, facts)
    text = json.dumps(document, indent=2) + "\n" if args.json else render_markdown(document)
    print(text, end="")
    if args.out is not None:
        with open_private(args.out, "w") as out:
            out.write(text)
    return EXIT_FAILED if args.strict and not document["passed"] else 0
