"""`masking asterisk config` renders dialplan/ for an Asterisk you run yourself;
`masking asterisk cli '...'` runs a CLI command on the one `masking run` runs,
whose control socket is its own (a plain `asterisk -rx` looks in /var/run)."""
from __future__ import annotations

import sys
from pathlib import Path

from bridge.cli.common import EXIT_FAILED, command, group
from bridge.config import Settings


def add_commands(sub) -> None:
    ast = group(sub, "asterisk", "Asterisk configuration")
    p = command(ast, "config", cmd_asterisk_config, "render dialplan/ templates with the current settings")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--instance-dir", default="/var/lib/masking-asterisk",
                   help="directory Asterisk sees as its own (etc/, run/, spool/... below it)")
    p = command(ast, "cli", cmd_asterisk_cli, "run an Asterisk CLI command on this project's Asterisk")
    p.add_argument("cli_command", metavar="COMMAND", help="e.g. 'pjsip show registrations' (quote it)")
    p.add_argument("--timeout", type=float, default=10.0)


async def cmd_asterisk_config(settings: Settings, args) -> int:
    from bridge.stack.asterisk import AsteriskInstall, write_config

    install = AsteriskInstall(root=Path("/"), module_dir="/usr/lib/x86_64-linux-gnu/asterisk/modules")
    write_config(settings, install, args.instance_dir, args.out, replace_local=False)  # ConfigError: exit 2
    print(f"rendered into {args.out}", file=sys.stderr)
    return 0


async def cmd_asterisk_cli(settings: Settings, args) -> int:
    from bridge.stack.asterisk import AsteriskCliError, AsteriskInstance, AsteriskNotInstalled

    try:
        output = AsteriskInstance(settings).run_cli(args.cli_command, timeout=args.timeout)
    except (AsteriskCliError, AsteriskNotInstalled) as exc:
        print(f"asterisk cli: {exc}", file=sys.stderr)
        return EXIT_FAILED
    sys.stdout.write(output)
    return 0
