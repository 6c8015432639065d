"""`masking purposes`: the purpose registry sessions must name (bridge/privacy/purposes.py)."""
from __future__ import annotations

from bridge.cli.common import command
from bridge.config import Settings

PURPOSE_COLUMNS = ["code", "records", "marketing", "sessions_days", "recordings_days", "webhook_hosts",
                   "notice_sha256"]


def add_commands(sub) -> None:
    command(sub, "purposes", cmd_purposes, "the registered purposes: notice, recording, retention, webhooks",
            listing=True)


async def cmd_purposes(settings: Settings, args) -> int:
    from bridge.cli.common import emit
    from bridge.privacy import purposes

    registry = purposes.registry_for(settings)
    purposes.check_opt_out_digit(registry, settings.notice.opt_out_digit)
    items = [p.to_json() for p in registry.purposes.values()]
    if not args.json:
        items = [{**p.to_json(), "sessions_days": p.sessions_days, "recordings_days": p.recordings_days,
                  "webhook_hosts": ",".join(p.webhook_hosts), "notice_sha256": p.notice.sha256[:12]}
                 for p in registry.purposes.values()]
    emit(items, PURPOSE_COLUMNS, args.json, "purposes")
    return 0
