"""`masking asterisk config` renders dialplan/ for an Asterisk you run yourself;
`masking asterisk cli '...'` runs a CLI command on the one `masking run` runs,
whose control socket is its own (a plain `asterisk -rx` looks in /var/run).

`config` fails loudly (exit 1, one line) when the templates are not installed
or the module directory cannot be found: a render that wrote nothing must not
say it succeeded.
"""
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
    p.add_argument("--module-dir",
                   help="Asterisk's module directory as that Asterisk sees it (default: found on this machine)")
    p.add_argument("--sounds-dir", type=Path,
                   help="also copy the project's sounds here (what Asterisk plays as masking/<name>)")
    p = command(ast, "cli", cmd_asterisk_cli, "run an Asterisk CLI command on this project's Asterisk")
    p.add_argument("cli_command", metavar="COMMAND", help="e.g. 'pjsip show registrations' (quote it)")
    p.add_argument("--timeout", type=float, default=10.0)


async def cmd_asterisk_config(settings: Settings, args) -> int:
    from bridge.stack.asterisk import (AsteriskInstall, ModuleDirNotFound, TemplatesMissing, copy_sounds,
                                       find_module_dir, write_config)

    try:
        module_dir = args.module_dir or _local_module_dir(settings, find_module_dir)
        install = AsteriskInstall(root=Path("/"), module_dir=module_dir)
        write_config(settings, install, args.instance_dir, args.out, replace_local=False)  # ConfigError: exit 2
        sounds = copy_sounds(args.sounds_dir) if args.sounds_dir else 0
    except (TemplatesMissing, ModuleDirNotFound) as exc:
        print(f"masking: {exc}", file=sys.stderr)
        return EXIT_FAILED
    rendered = len(list(args.out.glob("*.conf")))
    extra = f" and {sounds} sound(s) into {args.sounds_dir}" if args.sounds_dir else ""
    print(f"rendered {rendered} files into {args.out} (modules: {module_dir}){extra}", file=sys.stderr)
    return 0


def _local_module_dir(settings: Settings, find_module_dir) -> str:
    """This machine's Asterisk, or else the project's own Asterisk root (`make run`)."""
    from bridge.stack.asterisk import ModuleDirNotFound

    try:
        return find_module_dir(Path("/"))
    except ModuleDirNotFound:
        root = settings.asterisk.asterisk_root
        try:
            return find_module_dir(root)
        except ModuleDirNotFound:
            raise ModuleDirNotFound("no Asterisk modules on this machine or under "
                                    f"{root}: pass --module-dir (where that Asterisk keeps its modules)") from None


async def cmd_asterisk_cli(settings: Settings, args) -> int:
    from bridge.stack.asterisk import AsteriskCliError, AsteriskInstance, AsteriskNotInstalled

    try:
        output = AsteriskInstance(settings).run_cli(args.cli_command, timeout=args.timeout)
    except (AsteriskCliError, AsteriskNotInstalled) as exc:
        print(f"asterisk cli: {exc}", file=sys.stderr)
        return EXIT_FAILED
    sys.stdout.write(output)
    return 0
