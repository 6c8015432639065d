"""The inbound dialplan (dialplan/extensions.conf): what it hands the bridge,
and that its catch-all cannot swallow the hangup extension."""
import re
from pathlib import Path

from bridge.config import Settings
from bridge.stack.asterisk import AsteriskInstall, render_templates, template_values

DIALPLAN = Path(__file__).resolve().parents[2] / "dialplan"


def extensions() -> dict[str, list[str]]:
    """Each extension of [masking-inbound] and its priorities' applications, in order."""
    values = template_values(Settings(), AsteriskInstall(root=Path("/"), module_dir="/x"), "/tmp/instance")
    text = render_templates(values, DIALPLAN)["extensions.conf"]
    inbound = text.split("[masking-inbound]", 1)[1].split("\n[", 1)[0]
    found: dict[str, list[str]] = {}
    current = None
    for line in inbound.splitlines():
        if match := re.match(r"exten => ([^,]+),1,(.*)", line):
            current = match.group(1)
            found[current] = [match.group(2)]
        elif match := re.match(r"\s*same => n(?:\([\w-]+\))?,(.*)", line):
            found[current].append(match.group(1))
    return found


def test_stasis_and_the_fastagi_fallback_get_the_exten_the_trunk_and_the_to_header():
    inbound = extensions()["_!"]
    stasis = next(step for step in inbound if step.startswith("Stasis("))
    route = next(step for step in inbound if "/route" in step)
    assert stasis.endswith(",${EXTEN},${MASKING_TRUNK},${MASKING_TO})")
    # agi_extension brings the exten; the key is the FastAGI gate's shared secret (bridge/agi/gate.py)
    assert re.search(r"/route\?key=[^,]*,\$\{MASKING_TRUNK\},\$\{MASKING_TO\}\)$", route), route
    assert "Set(MASKING_TO=${URIENCODE(${PJSIP_HEADER(read,To)})})" in inbound, "a To header may hold commas"


def test_the_hangup_extension_ends_itself_rather_than_running_on_into_the_catch_all():
    # `_!` matches `h` too: past h's last priority Asterisk would route the call again.
    assert extensions()["h"][-1] == "Hangup()"
