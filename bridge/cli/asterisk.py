"""`masking asterisk config`: render dialplan/ with the current settings, for an Asterisk you run yourself."""
from __future__ import annotations

import sys
from pathlib import Path

from bridge.cli.common import command, group
from bridge.config import Settings
from bridge.files import write_private


def add_commands(sub) -> None:
    ast = group(sub, "asterisk", "Asterisk configuration")
    p = command(ast, "config", cmd_asterisk_config, "render dialplan/ templates with the current settings")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--instance-dir", default="/var/lib/masking-asterisk",
                   help="directory Asterisk sees as its own (etc/, run/, spool/... below it)")


async def cmd_asterisk_config(settings: Settings, args) -> int:
    from bridge.stack.asterisk import AsteriskInstall, render_templates, template_values

    install = AsteriskInstall(root=Path("/"), module_dir="/usr/lib/x86_64-linux-gnu/asterisk/modules")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in render_templates(template_values(settings, install, args.instance_dir)).items():
        write_private(args.out / name, text)  # ari.conf and manager.conf hold secrets
    print(f"rendered into {args.out}", file=sys.stderr)
    return 0
